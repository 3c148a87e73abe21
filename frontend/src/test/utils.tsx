import type { ReactNode } from "react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { MemoryRouter, Route, Routes, useLocation } from "react-router-dom";
import { vi } from "vitest";
import type { LogsPage } from "../api/types";

type LogEntry = LogsPage["logs"][number];

/** A complete log as /api/logs returns it, with the fields a test cares about. */
export function logEntry(fields: Partial<LogEntry> & Pick<LogEntry, "message" | "record_id">): LogEntry {
  return {
    timestamp: "2026-12-06T12:00:00Z", service: "checkout", level: "INFO", logger: "", host: "", pod: "", namespace: "",
    environment: "", version: "", trace_id: "", span_id: "", user_id: "", session_id: "", request_id: "", http_method: "",
    http_path: "", client_ip: "", user_agent: "", error_type: "", stack_trace: "", pattern_id: 0, pipeline: "default",
    attributes: {}, ...fields,
  };
}

/** A fetch stand-in answering by path; records every URL it was asked for. */
export function mockFetch(routes: Record<string, (url: URL, init?: RequestInit) => { status?: number; body: unknown }>) {
  const calls: { url: URL; init?: RequestInit }[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input), "http://dashboard.test");
    calls.push({ url, init });
    const handler = routes[url.pathname];
    if (!handler) return new Response(JSON.stringify({ detail: "Not Found" }), { status: 404 });
    const { status = 200, body } = handler(url, init);
    return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  });
  vi.stubGlobal("fetch", fetchMock);
  return calls;
}

export function LocationProbe() {
  const location = useLocation();
  return <output data-testid="location">{location.pathname + location.search}</output>;
}

export function renderWithProviders(ui: ReactNode, { route = "/", path = "*" }: { route?: string; path?: string } = {}) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return (
    <QueryClientProvider client={client}>
      <MemoryRouter initialEntries={[route]}>
        <Routes>
          <Route
            path={path}
            element={
              <>
                {ui}
                <LocationProbe />
              </>
            }
          />
        </Routes>
      </MemoryRouter>
    </QueryClientProvider>
  );
}
