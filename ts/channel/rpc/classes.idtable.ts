const INITIAL_SLOTS = 256;

/**
 * Values by a peer's sequential u32 id (the handlers still running for its requests). A
 * power-of-two slot table indexed by `id & mask`, with a Map only for the rare id whose slot a
 * much older entry still holds: constant set/delete on a Map keeps rehashing (see PendingRequests).
 * Grows when half full.
 */
export class IdTable<T> {
  private ids = new Uint32Array(INITIAL_SLOTS);
  private values: Array<T | undefined> = new Array(INITIAL_SLOTS).fill(undefined);
  private mask = INITIAL_SLOTS - 1;
  private overflow?: Map<number, T>;
  private count = 0;

  public get size(): number {
    return this.count;
  }

  public set(id: number, value: T): void {
    if (this.count * 2 >= this.values.length) this.grow();
    this.place(id, value);
    this.count++;
  }

  public get(id: number): T | undefined {
    const slot = id & this.mask;
    if (this.ids[slot] === id && this.values[slot] !== undefined) return this.values[slot];
    return this.overflow?.get(id);
  }

  /** Removes and returns the value of `id`. */
  public take(id: number): T | undefined {
    const slot = id & this.mask;
    const value = this.values[slot];
    if (value !== undefined && this.ids[slot] === id) {
      this.values[slot] = undefined;
      this.count--;
      return value;
    }
    const overflowed = this.overflow?.get(id);
    if (overflowed !== undefined) {
      this.overflow!.delete(id);
      this.count--;
    }
    return overflowed;
  }

  /** Every value (in no particular order), then empty. */
  public takeAll(): T[] {
    const all: T[] = [];
    for (const value of this.values) if (value !== undefined) all.push(value);
    if (this.overflow) for (const value of this.overflow.values()) all.push(value);
    this.values.fill(undefined);
    this.overflow = undefined;
    this.count = 0;
    return all;
  }

  private place(id: number, value: T): void {
    const slot = id & this.mask;
    if (this.values[slot] === undefined) {
      this.ids[slot] = id;
      this.values[slot] = value;
    } else {
      (this.overflow ??= new Map()).set(id, value);
    }
  }

  private grow(): void {
    const entries: Array<[number, T]> = [];
    for (let slot = 0; slot < this.values.length; slot++) {
      const value = this.values[slot];
      if (value !== undefined) entries.push([this.ids[slot], value]);
    }
    if (this.overflow) for (const entry of this.overflow) entries.push(entry);
    const size = this.values.length * 2;
    this.ids = new Uint32Array(size);
    this.values = new Array(size).fill(undefined);
    this.mask = size - 1;
    this.overflow = undefined;
    for (const [id, value] of entries) this.place(id, value);
  }
}
