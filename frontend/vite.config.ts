/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the API to a running gateway (make dev's, by default).
const gateway = process.env.LOGPIPE_GATEWAY_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: {
    // The gateway serves this folder at / and the wheel ships it as package data.
    outDir: "../services/logpipe/gateway/static",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1000,
  },
  server: {
    proxy: {
      "/api": { target: gateway, changeOrigin: true },
      "/ws": { target: gateway.replace(/^http/, "ws"), ws: true, changeOrigin: true },
      "/openapi.json": { target: gateway, changeOrigin: true },
    },
  },
  test: {
    environment: "jsdom",
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
    // Deadlines, not sleeps: generous because the suite shares small CI machines.
    testTimeout: 20_000,
  },
});
