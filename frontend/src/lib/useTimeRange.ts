import { useCallback, useMemo, useState } from "react";
import { useUrlState } from "./url";
import { DEFAULT_SINCE, resolveRange, type TimeRange } from "./time";

/**
 * The view's time range from the URL. A relative range (`since`) is pinned to the moment
 * the URL last changed or `refresh()` ran, so every query of one view asks for one range.
 */
export function useTimeRange(fallbackSince = DEFAULT_SINCE) {
  const [params, update] = useUrlState();
  const key = `${params.get("since") ?? ""}|${params.get("start") ?? ""}|${params.get("end") ?? ""}`;
  const [anchor, setAnchor] = useState(() => ({ key, at: Date.now() }));
  let at = anchor.at;
  if (anchor.key !== key) {
    at = Date.now();
    setAnchor({ key, at });
  }
  const range: TimeRange = useMemo(() => resolveRange(params, at, fallbackSince), [params, at, fallbackSince]);
  const refresh = useCallback(() => setAnchor({ key, at: Date.now() }), [key]);
  const setSince = useCallback((since: string) => update({ since, start: null, end: null }), [update]);
  const setAbsolute = useCallback(
    (start: Date, end: Date) => update({ start: start.toISOString(), end: end.toISOString(), since: null }),
    [update],
  );
  return { range, refresh, setSince, setAbsolute };
}
