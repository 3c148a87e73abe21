import { useState } from "react";
import { QueryClientProvider } from "@tanstack/react-query";
import { BrowserRouter, Navigate, Route, Routes } from "react-router-dom";
import { AuthProvider } from "./api/auth";
import { createQueryClient } from "./api/queryClient";
import { Layout } from "./components/Layout";
import { Empty } from "./components/States";
import { ExplorePage } from "./features/logs/ExplorePage";
import { PatternsPage } from "./features/patterns/PatternsPage";
import { AnomaliesPage } from "./features/anomalies/AnomaliesPage";
import { ServicesPage } from "./features/services/ServicesPage";
import { SearchPage } from "./features/search/SearchPage";
import { ReportsPage } from "./features/reports/ReportsPage";
import { ReportPage } from "./features/reports/ReportPage";
import { PipelinePage } from "./features/pipeline/PipelinePage";

export function AppRoutes() {
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<Navigate to="/explore" replace />} />
        <Route path="explore" element={<ExplorePage />} />
        <Route path="patterns" element={<PatternsPage />} />
        <Route path="anomalies" element={<AnomaliesPage />} />
        <Route path="services" element={<ServicesPage />} />
        <Route path="search" element={<SearchPage />} />
        <Route path="reports" element={<ReportsPage />} />
        <Route path="reports/:reportId" element={<ReportPage />} />
        <Route path="pipeline" element={<PipelinePage />} />
        <Route path="*" element={<Empty title="No such page">Pick a view in the navigation.</Empty>} />
      </Route>
    </Routes>
  );
}

export function App() {
  const [queryClient] = useState(createQueryClient);
  return (
    <QueryClientProvider client={queryClient}>
      <BrowserRouter>
        <AuthProvider>
          <AppRoutes />
        </AuthProvider>
      </BrowserRouter>
    </QueryClientProvider>
  );
}
