import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";
import { Link } from "react-router-dom";
import type { LogRecord } from "../../api/types";
import { LevelBadge } from "../../components/Badge";
import { formatTimestamp } from "../../lib/time";
import { linkTo } from "../../lib/url";

let rowsMarked = false;

const ERROR_LEVELS = new Set(["ERROR", "FATAL", "CRITICAL"]);

export function similarErrorsLink(log: LogRecord): string {
  return linkTo("/search", { q: log.message.slice(0, 500), level: "ERROR,FATAL" });
}

/** Every field of a record, then its attributes, as label/value text. */
export function LogDetails({ log }: { log: LogRecord }) {
  const fields = Object.entries(log).filter(([key]) => key !== "attributes");
  const attributes = Object.entries(log.attributes ?? {});
  const value = (key: string, raw: unknown) => {
    if (raw === null || raw === undefined || raw === "") return <span className="muted">—</span>;
    const text = typeof raw === "object" ? JSON.stringify(raw) : String(raw);
    if (key === "trace_id")
      return (
        <Link to={linkTo("/explore", { trace_id: text, since: "24h" })} title="All logs of this trace">
          {text}
        </Link>
      );
    if (key === "pattern_id" && text !== "0")
      return (
        <Link to={linkTo("/explore", { pattern_id: text, since: "24h" })} title="All logs of this pattern">
          {text}
        </Link>
      );
    if (key === "stack_trace" || key === "message") return <pre className="field-pre">{text}</pre>;
    return <span>{text}</span>;
  };
  return (
    <div className="log-details">
      <dl className="field-list">
        {fields.map(([key, raw]) => (
          <div key={key} className="field">
            <dt>{key}</dt>
            <dd>{value(key, raw)}</dd>
          </div>
        ))}
      </dl>
      {attributes.length ? (
        <>
          <h3 className="details-heading">attributes</h3>
          <dl className="field-list">
            {attributes.map(([key, raw]) => (
              <div key={key} className="field">
                <dt>{key}</dt>
                <dd>{raw}</dd>
              </div>
            ))}
          </dl>
        </>
      ) : null}
      {ERROR_LEVELS.has(log.level.toUpperCase()) ? (
        <Link className="button" to={similarErrorsLink(log)}>
          Find similar errors
        </Link>
      ) : null}
    </div>
  );
}

/**
 * The log table: virtualised rows, a row expands to every field, arrow keys move between
 * rows and Enter opens one. `onNearEnd` asks for the next page.
 */
export function LogTable({
  logs,
  onNearEnd,
  label = "Logs",
  height = 560,
}: {
  logs: LogRecord[];
  onNearEnd?: () => void;
  label?: string;
  height?: number;
}) {
  const scroller = useRef<HTMLDivElement>(null);
  const [expanded, setExpanded] = useState<Set<string>>(() => new Set());
  const [active, setActive] = useState(0);
  const virtualizer = useVirtualizer({
    count: logs.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => 32,
    overscan: 12,
    // The first render knows the table's height before the browser measures it.
    initialRect: { width: 0, height },
    getItemKey: (index) => logs[index]?.record_id ?? index,
  });
  const items = virtualizer.getVirtualItems();
  const lastIndex = items[items.length - 1]?.index ?? 0;

  useEffect(() => {
    if (logs.length && lastIndex >= logs.length - 30) onNearEnd?.();
  }, [lastIndex, logs.length, onNearEnd]);

  useEffect(() => {
    if (!rowsMarked && logs.length && items.length) {
      rowsMarked = true;
      performance.mark("logpipe:first-rows");
    }
  }, [logs.length, items.length]);

  const toggle = (id: string) =>
    setExpanded((current) => {
      const next = new Set(current);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  const move = (index: number) => {
    const bounded = Math.max(0, Math.min(logs.length - 1, index));
    setActive(bounded);
    virtualizer.scrollToIndex(bounded, { align: "auto" });
  };

  function onKeyDown(event: KeyboardEvent<HTMLDivElement>) {
    if (!logs.length) return;
    const page = Math.max(1, Math.floor(height / 32) - 1);
    const keys: Record<string, () => void> = {
      ArrowDown: () => move(active + 1),
      ArrowUp: () => move(active - 1),
      PageDown: () => move(active + page),
      PageUp: () => move(active - page),
      Home: () => move(0),
      End: () => move(logs.length - 1),
      Enter: () => logs[active] && toggle(logs[active].record_id),
      " ": () => logs[active] && toggle(logs[active].record_id),
      Escape: () => setExpanded(new Set()),
    };
    const action = keys[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  }

  const activeId = logs[active] ? `log-row-${active}` : undefined;
  return (
    <div className="log-table">
      <div className="log-row log-header" role="presentation" aria-hidden="true">
        <span className="col-time">time</span>
        <span className="col-level">level</span>
        <span className="col-service">service</span>
        <span className="col-message">message</span>
      </div>
      <div
        ref={scroller}
        className="log-scroll"
        style={{ height }}
        role="grid"
        aria-label={`${label}: arrow keys move, Enter opens a row`}
        aria-rowcount={logs.length}
        aria-activedescendant={activeId}
        tabIndex={0}
        onKeyDown={onKeyDown}
        data-testid="log-table"
      >
        <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
          {items.map((item) => {
            const log = logs[item.index];
            if (!log) return null;
            const open = expanded.has(log.record_id);
            return (
              <div
                key={item.key}
                data-index={item.index}
                ref={virtualizer.measureElement}
                className={`log-item${item.index === active ? " active" : ""}${open ? " open" : ""}`}
                style={{ position: "absolute", top: 0, left: 0, width: "100%", transform: `translateY(${item.start}px)` }}
              >
                <div
                  id={`log-row-${item.index}`}
                  role="row"
                  aria-rowindex={item.index + 1}
                  data-expanded={open}
                  aria-selected={item.index === active}
                  className={`log-row level-row-${log.level.toLowerCase()}`}
                  data-testid="log-row"
                  onClick={() => {
                    setActive(item.index);
                    toggle(log.record_id);
                  }}
                >
                  <span role="gridcell" className="col-time">
                    {formatTimestamp(log.timestamp)}
                  </span>
                  <span role="gridcell" className="col-level">
                    <LevelBadge level={log.level} />
                  </span>
                  <span role="gridcell" className="col-service">
                    {log.service}
                  </span>
                  <span role="gridcell" className="col-message" data-testid="log-message">
                    {log.message}
                  </span>
                </div>
                {open ? (
                  <div role="row" className="log-details-row">
                    <div role="gridcell">
                      <LogDetails log={log} />
                    </div>
                  </div>
                ) : null}
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}
