export type QueryValue = string | number | boolean | null | undefined | readonly (string | number)[];
