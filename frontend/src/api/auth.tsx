import { createContext, useCallback, useContext, useEffect, useId, useRef, useState, type FormEvent, type ReactNode } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { ApiError, apiGet, onUnauthorized } from "./client";
import { getToken, setToken } from "./token";
import type { Whoami } from "./types";

interface AuthState {
  whoami: Whoami | undefined;
  hasScope: (scope: string) => boolean;
  signOut: () => void;
  askForToken: () => void;
}

const AuthContext = createContext<AuthState | null>(null);

export function useAuth(): AuthState {
  const state = useContext(AuthContext);
  if (!state) throw new Error("useAuth outside AuthProvider");
  return state;
}

/** Who the stored token belongs to (its scopes and the pipeline it is bound to). */
export async function fetchWhoami(): Promise<Whoami> {
  return apiGet("/api/whoami");
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [prompting, setPrompting] = useState(() => !getToken());
  const whoami = useQuery({ queryKey: ["whoami"], queryFn: fetchWhoami, enabled: !prompting, staleTime: 60_000 });

  useEffect(() => onUnauthorized(() => setPrompting(true)), []);

  const accept = useCallback(() => {
    setPrompting(false);
    void queryClient.invalidateQueries();
  }, [queryClient]);

  const signOut = useCallback(() => {
    setToken(null);
    queryClient.clear();
    setPrompting(true);
  }, [queryClient]);

  const hasScope = useCallback(
    (scope: string) => {
      const scopes = whoami.data?.scopes ?? [];
      return scopes.includes("admin") || scopes.includes(scope);
    },
    [whoami.data],
  );

  return (
    <AuthContext.Provider value={{ whoami: whoami.data, hasScope, signOut, askForToken: () => setPrompting(true) }}>
      {children}
      {prompting ? <TokenPrompt onAccepted={accept} /> : null}
    </AuthContext.Provider>
  );
}

export function TokenPrompt({ onAccepted }: { onAccepted: () => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const titleId = useId();
  const errorId = useId();

  useEffect(() => input.current?.focus(), []);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const token = value.trim();
    if (!token) {
      setError("Paste an API token (it starts with lpt_).");
      return;
    }
    setChecking(true);
    setError(null);
    const previous = getToken();
    setToken(token);
    try {
      await fetchWhoami();
      onAccepted();
    } catch (caught) {
      setToken(previous && previous !== token ? previous : null);
      setError(
        caught instanceof ApiError && caught.status === 401
          ? "This token was not accepted (unknown, revoked or mistyped)."
          : caught instanceof ApiError
            ? caught.message
            : "The token could not be checked.",
      );
    } finally {
      setChecking(false);
    }
  }

  return (
    <div className="modal-backdrop">
      <div className="modal" role="dialog" aria-modal="true" aria-labelledby={titleId}>
        <h2 id={titleId}>Sign in with an API token</h2>
        <p>
          The API needs a token. <code>make dev</code> prints an admin token; make more with{" "}
          <code>logpipe tokens create --name me --scope read</code>. It is kept in this browser tab only.
        </p>
        <form onSubmit={submit}>
          <label htmlFor="token-input">API token</label>
          <input
            id="token-input"
            ref={input}
            type="password"
            autoComplete="off"
            spellCheck={false}
            value={value}
            onChange={(event) => setValue(event.target.value)}
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? errorId : undefined}
            placeholder="lpt_…"
          />
          {error ? (
            <p className="form-error" id={errorId} role="alert">
              {error}
            </p>
          ) : null}
          <div className="modal-actions">
            <button type="submit" className="button button-primary" disabled={checking}>
              {checking ? "Checking…" : "Use this token"}
            </button>
          </div>
        </form>
      </div>
    </div>
  );
}
