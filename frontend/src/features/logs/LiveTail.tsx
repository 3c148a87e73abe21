import { useEffect, useRef, useState } from "react";
import { socketUrl } from "../../api/client";
import type { LogRecord } from "../../api/types";
import { LogTable } from "./LogTable";
import type { LogFilters } from "./filters";

const KEEP = 1000;
const RATE_WINDOW_MS = 5000;

type Status = "connecting" | "live" | "closed" | "error";

/**
 * Follows /ws/logs with the page's filters. Paused, it keeps counting what arrives but
 * holds the table still; resuming shows what came meanwhile.
 */
export function LiveTail({ filters }: { filters: LogFilters }) {
  const [logs, setLogs] = useState<LogRecord[]>([]);
  const [paused, setPaused] = useState(false);
  const [status, setStatus] = useState<Status>("connecting");
  const [rate, setRate] = useState(0);
  const [dropped, setDropped] = useState(0);
  const buffer = useRef<LogRecord[]>([]);
  const arrivals = useRef<number[]>([]);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  const receivedWhilePaused = useRef(0);
  const [waiting, setWaiting] = useState(0);

  const level = filters.level.join(",");
  const service = filters.service.join(",");
  const contains = filters.contains;

  useEffect(() => {
    setStatus("connecting");
    const socket = new WebSocket(socketUrl("/ws/logs", { level, service, contains }));
    socket.onopen = () => setStatus("live");
    socket.onerror = () => setStatus("error");
    socket.onclose = (event) => setStatus(event.code === 1000 ? "closed" : "error");
    socket.onmessage = (event) => {
      let message: { type?: string; data?: LogRecord; count?: number };
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      if (message.type === "log" && message.data) {
        buffer.current.unshift(message.data);
        if (buffer.current.length > KEEP) buffer.current.length = KEEP;
        arrivals.current.push(Date.now());
        if (pausedRef.current) receivedWhilePaused.current += 1;
      } else if (message.type === "dropped" && message.count) {
        setDropped((value) => value + (message.count ?? 0));
      }
    };
    // Batched into a few renders a second, however fast logs arrive.
    const timer = window.setInterval(() => {
      const now = Date.now();
      arrivals.current = arrivals.current.filter((time) => now - time < RATE_WINDOW_MS);
      setRate(arrivals.current.length / (RATE_WINDOW_MS / 1000));
      if (pausedRef.current) {
        setWaiting(receivedWhilePaused.current);
      } else {
        receivedWhilePaused.current = 0;
        setWaiting(0);
        setLogs([...buffer.current]);
      }
    }, 250);
    return () => {
      window.clearInterval(timer);
      socket.close(1000);
    };
  }, [level, service, contains]);


  return (
    <section aria-label="Live tail">
      <div className="live-bar">
        <span className={`live-dot live-${status}`} aria-hidden="true" />
        <span data-testid="live-status">
          {status === "live" ? (paused ? "Paused" : "Live") : status === "connecting" ? "Connecting…" : "Disconnected"}
        </span>
        <span className="live-rate" data-testid="live-rate" aria-live="off">
          {rate.toFixed(1)} logs/s
        </span>
        {waiting > 0 ? <span className="muted">{waiting} new while paused</span> : null}
        {dropped > 0 ? <span className="muted">{dropped} dropped (too fast for this browser)</span> : null}
        <button type="button" className="button" onClick={() => setPaused(!paused)} aria-pressed={paused}>
          {paused ? "Resume" : "Pause"}
        </button>
      </div>
      {logs.length ? (
        <LogTable logs={logs} label="Live logs" />
      ) : (
        <div className="state state-empty" role="status">
          <strong>Waiting for logs…</strong>
          <div className="state-hint">New logs matching the filters appear here as they arrive.</div>
        </div>
      )}
    </section>
  );
}
