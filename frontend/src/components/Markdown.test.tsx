import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Markdown } from "./Markdown";

describe("Markdown", () => {
  it("renders headings, lists, tables and code", () => {
    const { container } = render(
      <Markdown source={"# Nightly report\n\nTotal **1,200** logs.\n\n- first `x`\n- second\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"} />,
    );
    expect(screen.getByRole("heading", { name: "Nightly report" })).toBeTruthy();
    expect(container.querySelector("strong")?.textContent).toBe("1,200");
    expect(screen.getAllByRole("listitem")).toHaveLength(2);
    expect(screen.getByRole("table").textContent).toContain("12");
  });

  it("keeps raw HTML as text", () => {
    const source = 'Beware <script>alert(1)</script> and <img src=x onerror="alert(2)">';
    const { container } = render(<Markdown source={source} />);
    expect(container.querySelector("script")).toBeNull();
    expect(container.querySelector("img")).toBeNull();
    expect(container.textContent).toBe(source);
  });
});
