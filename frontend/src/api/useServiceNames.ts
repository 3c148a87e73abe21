import { useQuery } from "@tanstack/react-query";
import { apiGet } from "./client";

/** Services that logged in the last day, for filter pickers. */
export function useServiceNames(): string[] {
  const query = useQuery({
    queryKey: ["service-names"],
    queryFn: () => apiGet("/api/services", { window_minutes: 1440 }),
    staleTime: 60_000,
  });
  return (query.data?.services ?? []).map((service) => service.service).sort();
}
