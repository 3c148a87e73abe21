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

  it("reads _emphasis_ at word edges only, leaving templates and snake_case alone", () => {
    const { container } = render(<Markdown source={"_Written by: model._ user_id <*> from <*> and my_var_name"} />);
    expect(container.querySelector("em")?.textContent).toBe("Written by: model.");
    expect(container.textContent).toBe("Written by: model. user_id <*> from <*> and my_var_name");
  });

  it("keeps raw HTML as text", () => {
    const source = 'Beware <script>alert(1)</script> and <img src=x onerror="alert(2)">';
    const { container } = render(<Markdown source={source} />);
    expect(container.querySelector("script")).toBeNull();
    expect(container.querySelector("img")).toBeNull();
    expect(container.textContent).toBe(source);
  });
});
