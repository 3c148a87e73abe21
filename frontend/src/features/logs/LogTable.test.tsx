import { fireEvent, render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { LogRecord } from "../../api/types";
import { renderWithProviders } from "../../test/utils";
import { LogTable } from "./LogTable";

function log(index: number, overrides: Partial<LogRecord> = {}): LogRecord {
  return {
    timestamp: new Date(Date.UTC(2026, 11, 6, 12, 0, index)).toISOString(),
    service: "checkout",
    level: "INFO",
    message: `message ${index}`,
    record_id: `r${index}`,
    trace_id: `trace${index}`,
    pattern_id: 1000 + index,
    attributes: { "code.function": "charge" },
    ...overrides,
  };
}

describe("LogTable", () => {
  it("shows HTML in a message as text", () => {
    const hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
    const { container } = render(renderWithProviders(<LogTable logs={[log(0, { message: hostile })]} />));
    expect(screen.getByTestId("log-message").textContent).toBe(hostile);
    expect(container.querySelector("img")).toBeNull();
    expect(container.querySelector("script")).toBeNull();
  });

  it("moves with the arrow keys and opens a row with Enter, with every field and links", () => {
    const logs = [log(0), log(1, { level: "ERROR", message: "payment declined" }), log(2)];
    render(renderWithProviders(<LogTable logs={logs} />));
    const grid = screen.getByRole("grid");
    fireEvent.keyDown(grid, { key: "ArrowDown" });
    expect(grid.getAttribute("aria-activedescendant")).toBe("log-row-1");
    fireEvent.keyDown(grid, { key: "Enter" });
    const row = document.getElementById("log-row-1") as HTMLElement;
    expect(row.dataset.expanded).toBe("true");
    const details = document.querySelector(".log-details") as HTMLElement;
    for (const field of ["timestamp", "service", "level", "message", "record_id", "code.function"]) {
      expect(within(details).getByText(field)).toBeTruthy();
    }
    expect(within(details).getByRole("link", { name: "trace1" }).getAttribute("href")).toBe("/explore?trace_id=trace1&since=24h");
    expect(within(details).getByRole("link", { name: "1001" }).getAttribute("href")).toBe("/explore?pattern_id=1001&since=24h");
    const similar = within(details).getByRole("link", { name: "Find similar errors" });
    expect(similar.getAttribute("href")).toBe("/search?q=payment+declined&level=ERROR%2CFATAL");
    fireEvent.keyDown(grid, { key: "Escape" });
    expect(document.querySelector(".log-details")).toBeNull();
  });

  it("offers similar errors only on error rows", () => {
    render(renderWithProviders(<LogTable logs={[log(0)]} />));
    fireEvent.click(screen.getByTestId("log-row"));
    expect(screen.queryByRole("link", { name: "Find similar errors" })).toBeNull();
  });
});
