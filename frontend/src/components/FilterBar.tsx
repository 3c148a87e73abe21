import { useEffect, useState, type FormEvent } from "react";
import { LEVELS } from "../api/types";

/** Level toggles: an empty selection means every level. */
export function LevelFilter({ selected, onChange }: { selected: string[]; onChange: (levels: string[]) => void }) {
  return (
    <fieldset className="level-filter">
      <legend className="visually-hidden">Levels</legend>
      {LEVELS.map((level) => {
        const on = selected.includes(level);
        return (
          <button
            key={level}
            type="button"
            className={`chip level-chip level-${level.toLowerCase()}${on ? " on" : ""}`}
            aria-pressed={on}
            onClick={() => onChange(on ? selected.filter((value) => value !== level) : [...selected, level])}
          >
            {level}
          </button>
        );
      })}
    </fieldset>
  );
}

export function ServiceSelect({
  value,
  services,
  onChange,
  id = "service-filter",
}: {
  value: string;
  services: string[];
  onChange: (service: string) => void;
  id?: string;
}) {
  const options = value && !services.includes(value) ? [value, ...services] : services;
  return (
    <div className="field-inline">
      <label htmlFor={id}>Service</label>
      <select id={id} value={value} onChange={(event) => onChange(event.target.value)}>
        <option value="">All services</option>
        {options.map((service) => (
          <option key={service} value={service}>
            {service}
          </option>
        ))}
      </select>
    </div>
  );
}

/** A text filter applied on Enter or when the field loses focus, so typing does not query per key. */
export function TextFilter({
  id,
  label,
  value,
  placeholder,
  onApply,
  wide,
}: {
  id: string;
  label: string;
  value: string;
  placeholder?: string;
  onApply: (value: string) => void;
  wide?: boolean;
}) {
  const [draft, setDraft] = useState(value);
  useEffect(() => setDraft(value), [value]);
  const apply = () => {
    if (draft.trim() !== value) onApply(draft.trim());
  };
  return (
    <form
      className={`field-inline${wide ? " wide" : ""}`}
      onSubmit={(event: FormEvent) => {
        event.preventDefault();
        apply();
      }}
    >
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        type="search"
        value={draft}
        placeholder={placeholder}
        onChange={(event) => setDraft(event.target.value)}
        onBlur={apply}
      />
    </form>
  );
}
