import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, apiGet, buildUrl, describeError, onUnauthorized } from "./client";
import { setToken } from "./token";
import { mockFetch } from "../test/utils";

afterEach(() => vi.unstubAllGlobals());

describe("buildUrl", () => {
  it("joins lists with commas, drops empty values and fills path parameters", () => {
    expect(buildUrl("/api/logs", { level: ["ERROR", "WARN"], service: [], contains: "", limit: 5 })).toBe(
      "/api/logs?level=ERROR%2CWARN&limit=5",
    );
    expect(buildUrl("/api/reports/{report_id}/download", { format: "json" }, { report_id: "a/b" })).toBe(
      "/api/reports/a%2Fb/download?format=json",
    );
  });
});

describe("describeError", () => {
  it("never shows more than the first line of a detail", () => {
    const message = describeError(503, { detail: "embedder down\nTraceback (most recent call last):\n  File x" });
    expect(message).toBe("The service is unavailable: embedder down");
    expect(describeError(500, { detail: "Traceback ..." })).toBe("The server failed (HTTP 500).");
    expect(describeError(422, { detail: [{ msg: "limit too large" }] })).toBe("limit too large");
  });
});

describe("apiGet", () => {
  it("sends the session's token as a bearer header", async () => {
    setToken("lpt_abc_secret");
    const calls = mockFetch({ "/api/whoami": () => ({ body: { name: "me", scopes: ["read"], pipeline: null } }) });
    await expect(apiGet("/api/whoami")).resolves.toEqual({ name: "me", scopes: ["read"], pipeline: null });
    expect((calls[0]?.init?.headers as Record<string, string>).Authorization).toBe("Bearer lpt_abc_secret");
    expect(calls[0]?.url.search).toBe("");
  });

  it("tells listeners about a 401 and throws an ApiError", async () => {
    mockFetch({ "/api/logs": () => ({ status: 401, body: { detail: "missing token" } }) });
    const listener = vi.fn();
    const stop = onUnauthorized(listener);
    await expect(apiGet("/api/logs", { limit: 1 })).rejects.toMatchObject({ status: 401 });
    expect(listener).toHaveBeenCalledTimes(1);
    stop();
    await expect(apiGet("/api/logs")).rejects.toBeInstanceOf(ApiError);
    expect(listener).toHaveBeenCalledTimes(1);
  });
});
