export function LevelBadge({ level }: { level: string }) {
  const normalized = level.toUpperCase();
  return <span className={`level level-${normalized.toLowerCase()}`}>{normalized}</span>;
}

export function SeverityBadge({ severity }: { severity: string }) {
  return <span className={`severity severity-${severity.toLowerCase()}`}>{severity}</span>;
}

export function Badge({ tone = "neutral", children }: { tone?: "neutral" | "new" | "warn" | "bad" | "good"; children: string }) {
  return <span className={`badge badge-${tone}`}>{children}</span>;
}
