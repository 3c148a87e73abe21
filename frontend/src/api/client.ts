// The one typed client of the gateway API. Paths, query parameters and response bodies come
// from src/api/schema.d.ts, generated from the gateway's OpenAPI document (`make frontend-api`);
// a pytest regenerates it and fails when it drifts, and `tsc` then fails on any view that no
// longer fits the API.
import type { paths } from "./schema";
import { getToken } from "./token";

type Method = "get" | "post";
type PathsWith<M extends Method> = {
  [P in keyof paths]: paths[P] extends Record<M, { parameters: unknown }> ? P : never;
}[keyof paths];

export type GetPath = PathsWith<"get">;
export type PostPath = PathsWith<"post">;

type SchemaQuery<P extends GetPath> = paths[P] extends { get: { parameters: { query?: infer Q } } } ? Q : never;
type QueryValue = string | number | boolean | null | undefined | readonly (string | number)[];
/** The parameters the OpenAPI document declares for a path (lists may be comma-joined). */
export type QueryParams<P extends GetPath> = { [K in keyof NonNullable<SchemaQuery<P>>]?: QueryValue };

type JsonBody<O> = O extends { responses: { 200: { content: { "application/json": infer B } } } } ? B : unknown;
/** The JSON body a path answers with, as the gateway's response model declares it. */
export type GetResponse<P extends GetPath> = JsonBody<paths[P]["get"]>;

/** An API answer other than 2xx, with a message safe to show a person. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

type UnauthorizedListener = () => void;
const unauthorizedListeners = new Set<UnauthorizedListener>();
/** Called on every 401, so the app can ask for a token. */
export function onUnauthorized(listener: UnauthorizedListener): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export function buildUrl(path: string, query?: Record<string, QueryValue>, pathParams?: Record<string, string>): string {
  let url = path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(pathParams?.[name] ?? ""));
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) {
      if (value.length) search.set(key, value.join(","));
    } else {
      search.set(key, String(value));
    }
  }
  const text = search.toString();
  if (text) url += `?${text}`;
  return url;
}

/** A short message from an error body: FastAPI's `detail`, never a stack trace. */
export function describeError(status: number, body: unknown): string {
  let detail = "";
  if (body && typeof body === "object" && "detail" in body) {
    const value = (body as { detail: unknown }).detail;
    if (typeof value === "string") detail = value;
    else if (Array.isArray(value)) {
      detail = value
        .map((item) => (item && typeof item === "object" && "msg" in item ? String((item as { msg: unknown }).msg) : ""))
        .filter(Boolean)
        .join("; ");
    }
  }
  // One line, bounded: a server error may carry a traceback in its text.
  detail = (detail.split("\n")[0] ?? "").slice(0, 300);
  if (status === 401) return "A valid API token is needed.";
  if (status === 403) return detail || "This token is not allowed to see this.";
  if (status >= 500) return detail && status !== 500 ? `The service is unavailable: ${detail}` : `The server failed (HTTP ${status}).`;
  return detail || `Request failed (HTTP ${status}).`;
}

async function request(method: string, url: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, "The gateway is not reachable.");
  }
  if (!response.ok) {
    let parsed: unknown = null;
    try {
      parsed = await response.json();
    } catch {
      parsed = null;
    }
    if (response.status === 401) unauthorizedListeners.forEach((listener) => listener());
    throw new ApiError(response.status, describeError(response.status, parsed));
  }
  return response;
}

/** GET a path; the result has the path's response model unless `T` names one (untyped routes). */
export async function apiGet<P extends GetPath, T = GetResponse<P>>(
  path: P,
  query?: QueryParams<P>,
  options: { pathParams?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<T> {
  const response = await request("GET", buildUrl(path, query as Record<string, QueryValue>, options.pathParams), undefined, options.signal);
  return (await response.json()) as T;
}

export async function apiPost<T>(path: PostPath, body: unknown): Promise<T> {
  const response = await request("POST", path, body);
  return (await response.json()) as T;
}

/** A file the API serves as an attachment, fetched with the token (a plain link cannot send it). */
export async function apiDownload(path: GetPath, query: Record<string, QueryValue>, pathParams: Record<string, string>) {
  const response = await request("GET", buildUrl(path, query, pathParams));
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const match = /filename="?([^";]+)"?/.exec(disposition);
  return { blob: await response.blob(), filename: match?.[1] ?? "download" };
}

/** The WebSocket URL of a stream; browsers cannot set headers on a socket, so the token rides in the query. */
export function socketUrl(path: "/ws/logs" | "/ws/events", query: Record<string, QueryValue> = {}): string {
  const base = `${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}`;
  return base + buildUrl(path, { ...query, token: getToken() ?? "" });
}
