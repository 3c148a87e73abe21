import { render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { mockFetch, renderWithProviders } from "../../test/utils";
import { SearchPage } from "./SearchPage";

afterEach(() => vi.unstubAllGlobals());

const hit = (record_id: string, match: "vector" | "keyword" | "both", template: string | null, message: string) => ({
  rank: 1, score: 0.81, record_id, match, template, pattern_id: 42,
  payload: { timestamp: "2026-12-06T12:00:00Z", service: "checkout", level: "ERROR", message, pattern_id: 42 },
});

describe("SearchPage", () => {
  it("says why each hit matched and shows its pattern, as text", async () => {
    const calls = mockFetch({
      "/api/services": () => ({ body: { window_minutes: 1440, pipeline: null, services: [] } }),
      "/api/search/semantic": () => ({
        body: {
          query: "db unreachable", results: [
            hit("a", "both", "Database connection timeout after <*> ms", "Database connection timeout after 31 ms"),
            hit("b", "keyword", null, "<img src=x onerror=alert(1)> postgres refused"),
          ],
        },
      }),
    });
    render(renderWithProviders(<SearchPage />, { route: "/search?q=db+unreachable" }));
    const hits = await screen.findAllByTestId("search-hit");
    expect(within(hits[0]!).getByText("by meaning and words")).toBeTruthy();
    expect(within(hits[0]!).getByText("Database connection timeout after <*> ms")).toBeTruthy();
    expect(within(hits[0]!).getByText("81.0%")).toBeTruthy();
    expect(within(hits[1]!).getByText("by words")).toBeTruthy();
    expect(within(hits[1]!).queryByText(/Pattern:/)).toBeNull();
    // A message is text, never markup.
    expect(within(hits[1]!).getByText("<img src=x onerror=alert(1)> postgres refused")).toBeTruthy();
    expect(hits[1]!.querySelector("img")).toBeNull();
    const searched = calls.find((call) => call.url.pathname === "/api/search/semantic")!;
    expect(JSON.parse(String(searched.init?.body)).query).toBe("db unreachable");
  });
});
