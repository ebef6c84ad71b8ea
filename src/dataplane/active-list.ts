/**
 * The exchanges in flight in one service runtime, as an intrusive doubly linked list: add and
 * remove are a few field writes, with no allocation and no hashing. A Set here cost ~1.3 µs
 * per request at saturation (measured: 17.3 → 16.0 µs CPU per request), most of it in
 * OrderedHashSet rehashing under constant add/delete churn. Thread-local.
 */
export interface ActiveLinks<T> {
  prevActive: T | null;
  nextActive: T | null;
  /** Whether the node is in a list (so a double add or remove is harmless). */
  listed: boolean;
}

export class ActiveList<T extends ActiveLinks<T>> {
  private head: T | null = null;
  size = 0;

  add(node: T): void {
    if (node.listed) return;
    node.listed = true;
    node.prevActive = null;
    node.nextActive = this.head;
    if (this.head !== null) this.head.prevActive = node;
    this.head = node;
    this.size++;
  }

  delete(node: T): void {
    if (!node.listed) return;
    node.listed = false;
    if (node.prevActive !== null) node.prevActive.nextActive = node.nextActive;
    else this.head = node.nextActive;
    if (node.nextActive !== null) node.nextActive.prevActive = node.prevActive;
    node.prevActive = null;
    node.nextActive = null;
    this.size--;
  }

  /** Calls `visit` on every node; a node may remove itself (or be removed) during its visit. */
  forEach(visit: (node: T) => void): void {
    let node = this.head;
    while (node !== null) {
      const next: T | null = node.nextActive;
      visit(node);
      node = next;
    }
  }
}
