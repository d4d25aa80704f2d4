/**
 * A chunk's usernames as the reader thread asks Redis about them (`ImportStore.claimNames`): one
 * string, a line each for the name, its row and whether it counts as an earlier row for the rows
 * after it (`1` or `0`). One string a chunk, not an object a row: the API's thread only passes it
 * on, and allocates nothing a row that could outlive the round trip to Redis (BENCHMARKS.md §7).
 * The names are valid usernames (Keycloak's rules), so they hold no line feed.
 */
export interface NameEntry {
  name: string;
  row: number;
  register: boolean;
}

export function packNames(entries: NameEntry[]): string {
  let packed = '';
  for (const { name, row, register } of entries) packed += `${name}\n${row}\n${register ? 1 : 0}\n`;
  return packed;
}

/**
 * What Redis answers, the index of each name the file had on an earlier row and that row, in
 * pairs, spread out: for each name of the chunk, the earlier row, or 0.
 */
export function earlierRowsOf(count: number, pairs: number[]): number[] {
  const firsts = new Array<number>(count).fill(0);
  for (let i = 0; i < pairs.length; i += 2) firsts[pairs[i]] = pairs[i + 1];
  return firsts;
}
