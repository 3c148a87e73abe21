import { createContext, useContext } from "react";

export type Theme = "dark" | "light";

/** The current theme; canvas charts read colours once, so they rebuild when it changes. */
export const ThemeContext = createContext<Theme>("dark");

export function useTheme(): Theme {
  return useContext(ThemeContext);
}
