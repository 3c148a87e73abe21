import { useState } from "react";
import { NavLink, Outlet } from "react-router-dom";
import { useAuth } from "../api/auth";
import { ThemeContext, type Theme } from "./theme";

const PAGES = [
  ["/explore", "Explore"],
  ["/patterns", "Patterns"],
  ["/anomalies", "Anomalies"],
  ["/services", "Services"],
  ["/search", "Search"],
  ["/reports", "Reports"],
  ["/pipeline", "Pipeline"],
] as const;

function initialTheme(): Theme {
  const stored = window.localStorage.getItem("logpipe.theme");
  if (stored === "dark" || stored === "light") return applyTheme(stored);
  return applyTheme(window.matchMedia?.("(prefers-color-scheme: light)").matches ? "light" : "dark");
}

// Set before React renders with the new theme: charts read the CSS colours while rendering.
function applyTheme(theme: Theme): Theme {
  document.documentElement.dataset.theme = theme;
  window.localStorage.setItem("logpipe.theme", theme);
  return theme;
}

export function Layout() {
  const { whoami, signOut } = useAuth();
  const [theme, setTheme] = useState<Theme>(initialTheme);

  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">logpipe</span>
        <nav aria-label="Views">
          <ul className="nav">
            {PAGES.map(([path, label]) => (
              <li key={path}>
                <NavLink to={path}>{label}</NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="topbar-right">
          {whoami ? (
            <span className="who" title={`scopes: ${whoami.scopes.join(", ")}`}>
              {whoami.pipeline ? (
                <span className="badge badge-warn" data-testid="bound-pipeline">
                  pipeline: {whoami.pipeline}
                </span>
              ) : null}
              <span className="who-name">{whoami.name}</span>
            </span>
          ) : null}
          <button
            type="button"
            className="button button-ghost"
            onClick={() => setTheme(applyTheme(theme === "dark" ? "light" : "dark"))}
            aria-label={`Switch to ${theme === "dark" ? "light" : "dark"} theme`}
          >
            {theme === "dark" ? "Light" : "Dark"}
          </button>
          {whoami ? (
            <button type="button" className="button button-ghost" onClick={signOut}>
              Sign out
            </button>
          ) : null}
        </div>
      </header>
      <main id="main" className="main" tabIndex={-1}>
        <ThemeContext.Provider value={theme}>
          <Outlet />
        </ThemeContext.Provider>
      </main>
    </div>
  );
}
