import type { ReactNode } from "react";

// A small Markdown renderer for reports: headings, lists, tables, code, bold and inline code,
// built as React elements. Raw HTML in the text stays text; links are not followed.

function inline(text: string, keyPrefix: string): ReactNode[] {
  const out: ReactNode[] = [];
  // Emphasis only with underscores at word edges: templates are full of `<*>` and snake_case.
  const pattern = /(`[^`]+`|\*\*[^*]+\*\*|(?<!\w)_[^_\n]+_(?!\w))/g;
  let last = 0;
  let match: RegExpExecArray | null;
  let index = 0;
  while ((match = pattern.exec(text)) !== null) {
    if (match.index > last) out.push(text.slice(last, match.index));
    const token = match[0];
    const key = `${keyPrefix}-${index++}`;
    if (token.startsWith("`")) out.push(<code key={key}>{token.slice(1, -1)}</code>);
    else if (token.startsWith("_")) out.push(<em key={key}>{token.slice(1, -1)}</em>);
    else out.push(<strong key={key}>{token.slice(2, -2)}</strong>);
    last = match.index + token.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function splitRow(line: string): string[] {
  return line
    .trim()
    .replace(/^\|/, "")
    .replace(/\|$/, "")
    .split("|")
    .map((cell) => cell.trim());
}

export function Markdown({ source }: { source: string }) {
  const lines = source.replace(/\r\n/g, "\n").split("\n");
  const blocks: ReactNode[] = [];
  let i = 0;
  let key = 0;
  while (i < lines.length) {
    const line = lines[i] ?? "";
    if (!line.trim()) {
      i++;
      continue;
    }
    if (line.startsWith("```")) {
      const body: string[] = [];
      i++;
      while (i < lines.length && !(lines[i] ?? "").startsWith("```")) body.push(lines[i++] ?? "");
      i++;
      blocks.push(<pre key={key++}>{body.join("\n")}</pre>);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      // Report headings sit under the page's own h1/h2.
      const level = Math.min(6, (heading[1]?.length ?? 1) + 1);
      const Tag = `h${level}` as "h2";
      blocks.push(<Tag key={key++}>{inline(heading[2] ?? "", `h${key}`)}</Tag>);
      i++;
      continue;
    }
    if (line.trim().startsWith("|") && /^\s*\|?\s*:?-{2,}/.test(lines[i + 1] ?? "")) {
      const header = splitRow(line);
      i += 2;
      const rows: string[][] = [];
      while (i < lines.length && (lines[i] ?? "").trim().startsWith("|")) rows.push(splitRow(lines[i++] ?? ""));
      blocks.push(
        <div className="table-scroll" key={key++}>
          <table className="data-table">
            <thead>
              <tr>
                {header.map((cell, c) => (
                  <th key={c} scope="col">
                    {inline(cell, `th${c}`)}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((row, r) => (
                <tr key={r}>
                  {row.map((cell, c) => (
                    <td key={c}>{inline(cell, `td${r}-${c}`)}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>,
      );
      continue;
    }
    const bullet = /^\s*([-*]|\d+\.)\s+/;
    if (bullet.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const items: string[] = [];
      while (i < lines.length && bullet.test(lines[i] ?? "")) items.push((lines[i++] ?? "").replace(bullet, ""));
      const List = ordered ? "ol" : "ul";
      blocks.push(
        <List key={key++}>
          {items.map((item, n) => (
            <li key={n}>{inline(item, `li${n}`)}</li>
          ))}
        </List>,
      );
      continue;
    }
    const paragraph: string[] = [];
    while (i < lines.length && (lines[i] ?? "").trim() && !/^(#{1,6}\s|```|\s*[-*]\s|\s*\|)/.test(lines[i] ?? "")) {
      paragraph.push(lines[i++] ?? "");
    }
    if (!paragraph.length) paragraph.push(lines[i++] ?? "");
    blocks.push(<p key={key++}>{inline(paragraph.join(" "), `p${key}`)}</p>);
  }
  return <div className="markdown">{blocks}</div>;
}
