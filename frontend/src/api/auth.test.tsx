import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { QueryClient, QueryClientProvider, useQuery } from "@tanstack/react-query";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AuthProvider, useAuth } from "./auth";
import { apiGet } from "./client";
import { getToken } from "./token";
import { mockFetch } from "../test/utils";

afterEach(() => vi.unstubAllGlobals());

function Probe() {
  const { whoami } = useAuth();
  const logs = useQuery({ queryKey: ["probe"], queryFn: () => apiGet<"/api/logs", { total: number }>("/api/logs") });
  return (
    <p>
      {whoami ? `signed in as ${whoami.name} (${whoami.pipeline})` : "anonymous"} · {logs.data ? `total ${logs.data.total}` : "no data"}
    </p>
  );
}

describe("AuthProvider", () => {
  it("asks for a token on 401, refuses a bad one and signs in with a good one", async () => {
    const good = "lpt_aaaaaaaaaaaa_good";
    const authorized = (init?: RequestInit) => (init?.headers as Record<string, string>)?.Authorization === `Bearer ${good}`;
    mockFetch({
      "/api/whoami": (_url, init) =>
        authorized(init) ? { body: { name: "alice", scopes: ["read"], pipeline: "team-a" } } : { status: 401, body: { detail: "bad token" } },
      "/api/logs": (_url, init) => (authorized(init) ? { body: { total: 7 } } : { status: 401, body: { detail: "no token" } }),
    });
    const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
    render(
      <QueryClientProvider client={client}>
        <AuthProvider>
          <Probe />
        </AuthProvider>
      </QueryClientProvider>,
    );
    const dialog = await screen.findByRole("dialog", { name: "Sign in with an API token" });
    expect(dialog).toBeTruthy();
    fireEvent.change(screen.getByLabelText("API token"), { target: { value: "lpt_bbbbbbbbbbbb_wrong" } });
    fireEvent.click(screen.getByRole("button", { name: "Use this token" }));
    expect(await screen.findByText(/not accepted/)).toBeTruthy();
    expect(getToken()).toBeNull();
    fireEvent.change(screen.getByLabelText("API token"), { target: { value: good } });
    fireEvent.click(screen.getByRole("button", { name: "Use this token" }));
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    expect(getToken()).toBe(good);
    expect(await screen.findByText("signed in as alice (team-a) · total 7")).toBeTruthy();
  });
});
