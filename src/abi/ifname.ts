/**
 * A Linux interface name as Membrane accepts it from anyone (CNI runtimes, API requests, the
 * records it compiles into nft rules): 1-15 characters (IFNAMSIZ - 1) of letters, digits, "_",
 * "." and "-". Nothing that `ip -batch` lines, nft text or a path could read as syntax.
 */
export const isIfname = (s: string): boolean => /^[A-Za-z0-9_.-]{1,15}$/.test(s);
