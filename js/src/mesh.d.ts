/** Room sizes and link counts of the mesh (PROTOCOL.md §6.9; the reference's `MeshConfig`). */
export interface MeshOptions {
  /** Largest room that is a full mesh, this peer counted (16; at least 2). */
  fullMeshMax?: number;
  /** Links a peer of a large room dials to (6). */
  degree?: number;
  /** Fewer links than this and a peer dials more, back up to `degree` (4). */
  degreeLow?: number;
  /** More links than this and a peer drops some; it accepts up to twice this (12). */
  degreeHigh?: number;
  /** Seconds before a dial that has not opened is given up (15). */
  dialTimeout?: number;
  /** Seconds a peer that answered `busy` is not dialed again (5). */
  refusedCooldown?: number;
  /** About how often, in seconds and jittered x0.5-x1.5, a peer swaps a link (30). */
  rewireInterval?: number;
}

/** Checked and frozen mesh options: a TypeError for an unknown or non-number option, a
 * RangeError unless 2 <= fullMeshMax and 1 <= degreeLow <= degree <= degreeHigh. */
export class MeshConfig implements Required<MeshOptions> {
  constructor(options?: MeshOptions);
  readonly fullMeshMax: number;
  readonly degree: number;
  readonly degreeLow: number;
  readonly degreeHigh: number;
  readonly dialTimeout: number;
  readonly refusedCooldown: number;
  readonly rewireInterval: number;
}

/** One peer's view of its links and the choice of which to open or close (sans-IO: the
 * caller passes the time, in seconds of any monotonic clock). */
export class Topology {
  /** `random`: uniform in [0, 1), default `Math.random` (pass a seeded one in tests). */
  constructor(config?: MeshConfig | MeshOptions | null, random?: () => number);
  readonly config: MeshConfig;
  /** The peers linked now. */
  readonly linked: Set<string>;
  /** Links open or being dialed. */
  readonly degree: number;
  /** Whether a room of `roomSize` peers (this one counted) is past `fullMeshMax`. */
  bounded(roomSize: number): boolean;
  linkUp(peer: string): void;
  linkDown(peer: string): void;
  /** `peer` answered `busy`: not dialed again for `refusedCooldown`. */
  refused(peer: string, now: number): void;
  /** Whom to dial when joining (or rejoining signaling): everyone in a small room,
   * `degree` random peers in a large one. `present`: the others in the room. */
  choose(present: Iterable<string>, now: number): string[];
  /** Whether to accept a link `peer` offers (false: answer `busy`). */
  accepts(peer: string, roomSize: number): boolean;
  /** Peers to dial now (under `degreeLow`, a rewiring, a room back to a full mesh). */
  toDial(present: Iterable<string>, now: number): string[];
  /** Links to close (past `degreeHigh`, or after a rewiring link opened); `degrees`: how
   * many links each neighbour announced (HELLO/LINKS). */
  toDrop(roomSize: number, degrees: Map<string, number> | Record<string, number>): string[];
  /** When the topology next has timed work (null: none). */
  nextDeadline(): number | null;
  /** Whether `toDial`/`toDrop` may have work. */
  needsAttention(roomSize: number, now: number): boolean;
}
