import { useEffect, useRef, useState, type FormEvent } from "react";
import { LEVELS } from "../api/types";

/** Level toggles: an empty selection means every level. */
export function LevelFilter({ selected, onChange }: { selected: string[]; onChange: (levels: string[]) => void }) {
  return (
    <fieldset className="level-filter">
      <legend className="visually-hidden">Levels</legend>
      {LEVELS.map((level) => {
        const on = selected.includes(level);
        return (
          <button
            key={level}
            type="button"
            className={`chip level-chip level-${level.toLowerCase()}${on ? " on" : ""}`}
            aria-pressed={on}
            onClick={() => onChange(on ? selected.filter((value) => value !== level) : [...selected, level])}
          >
            {level}
          </button>
        );
      })}
    </fieldset>
  );
}

export function ServiceSelect({
  value,
  services,
  onChange,
  id = "service-filter",
}: {
  value: string;
  services: string[];
  onChange: (service: string) => void;
  id?: string;
}) {
  const options = value && !services.includes(value) ? [value, ...services] : services;
  return (
    <div className="field-inline">
      <label htmlFor={id}>Service</label>
      <select id={id} value={value} onChange={(event) => onChange(event.target.value)}>
        <option value="">All services</option>
        {options.map((service) => (
          <option key={service} value={service}>
            {service}
          </option>
        ))}
      </select>
    </div>
  );
}

/** Label of the multi-service control when closed: what a user would read aloud. */
export function servicesSummary(selected: string[]): string {
  if (!selected.length) return "All services";
  if (selected.length <= 2) return selected.join(", ");
  return `${selected.length} services`;
}

/**
 * Several services at once (Explore's filter), as Grafana's and Kibana's multi-value filters:
 * a disclosure with one checkbox per service, a find box once the list is long, and Clear.
 * Services picked earlier but not in the list (a URL shared from another time range) stay listed.
 */
export function ServiceMultiSelect({
  selected,
  services,
  onChange,
  id = "service-filter",
}: {
  selected: string[];
  services: string[];
  onChange: (services: string[]) => void;
  id?: string;
}) {
  const [find, setFind] = useState("");
  // The URL (the source of truth) changes in a transition: until it has, the boxes show what
  // was just clicked, so a tick never flickers back.
  const [pending, setPending] = useState<string[] | null>(null);
  const key = selected.join(",");
  useEffect(() => setPending(null), [key]);
  const current = pending ?? selected;
  const menu = useRef<HTMLDetailsElement>(null);
  useEffect(() => {
    // A menu closes when the user clicks elsewhere or presses Escape, as a <select> would.
    const close = (event: Event) => {
      const details = menu.current;
      if (!details?.open) return;
      if (event instanceof KeyboardEvent ? event.key === "Escape" : !details.contains(event.target as Node)) {
        details.open = false;
      }
    };
    document.addEventListener("mousedown", close);
    document.addEventListener("keydown", close);
    return () => {
      document.removeEventListener("mousedown", close);
      document.removeEventListener("keydown", close);
    };
  }, []);
  const all = [...current.filter((service) => !services.includes(service)), ...services];
  const needle = find.trim().toLowerCase();
  const shown = needle ? all.filter((service) => service.toLowerCase().includes(needle)) : all;
  const choose = (next: string[]) => {
    setPending(next);
    onChange(next);
  };
  const toggle = (service: string) =>
    choose(current.includes(service) ? current.filter((value) => value !== service) : [...current, service].sort());
  return (
    <details className="multi-select" id={id} ref={menu}>
      <summary className="button">{`Service: ${servicesSummary(current)}`}</summary>
      <fieldset className="multi-select-menu">
        <legend className="visually-hidden">Services to show</legend>
        {all.length > 8 ? (
          <input
            type="search"
            aria-label="Find a service"
            placeholder="find a service"
            value={find}
            onChange={(event) => setFind(event.target.value)}
          />
        ) : null}
        <div className="multi-select-options">
          {shown.map((service) => (
            <label key={service} className="multi-select-option">
              <input type="checkbox" checked={current.includes(service)} onChange={() => toggle(service)} />
              {service}
            </label>
          ))}
          {!shown.length ? <p className="muted">No service matches.</p> : null}
        </div>
        <button type="button" className="button button-ghost" disabled={!current.length} onClick={() => choose([])}>
          Clear: all services
        </button>
      </fieldset>
    </details>
  );
}

/** A text filter applied on Enter or when the field loses focus, so typing does not query per key. */
export function TextFilter({
  id,
  label,
  value,
  placeholder,
  onApply,
  wide,
}: {
  id: string;
  label: string;
  value: string;
  placeholder?: string;
  onApply: (value: string) => void;
  wide?: boolean;
}) {
  const [draft, setDraft] = useState(value);
  useEffect(() => setDraft(value), [value]);
  const apply = () => {
    if (draft.trim() !== value) onApply(draft.trim());
  };
  return (
    <form
      className={`field-inline${wide ? " wide" : ""}`}
      onSubmit={(event: FormEvent) => {
        event.preventDefault();
        apply();
      }}
    >
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        type="search"
        value={draft}
        placeholder={placeholder}
        onChange={(event) => setDraft(event.target.value)}
        onBlur={apply}
      />
    </form>
  );
}
