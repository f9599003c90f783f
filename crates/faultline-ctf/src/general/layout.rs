//! Decoding plan of the general reader: the metadata's types instantiated as a tree of
//! [`Node`]s per scope, with every variant tag and sequence length resolved to the node it
//! reads, and the binary decoder that walks that tree over a packet.
//!
//! Path resolution (CTF 1.8 scoping): an absolute path starts with a scope name
//! (`trace.packet.header.`, `stream.packet.context.`, `stream.event.header.`,
//! `stream.event.context.`, `event.context.`, `event.fields.`); a relative path is looked up
//! in the enclosing structs, innermost first, among the fields declared *before* the
//! reference, then among the top-level fields of the earlier scopes. The target must be an
//! integer (sequence length) or an enum (variant tag) outside any array. Each target gets a
//! slot in which the decoder stores the value it reads; a use of a slot that was not written
//! in the current packet/event is an error.
//!
//! Bounds: at most [`MAX_NODES`] nodes per trace and [`MAX_NODE_DEPTH`] nesting; the decoder
//! appends at most [`MAX_ITEMS`] items per event and checks every read against the content
//! end of the packet, so a hostile length cannot make it loop or allocate beyond that.

use super::meta::{IntTy, Mapping, Metadata, Order, Ty, TypeId};
use std::collections::HashMap;

/// Most nodes the plan of one trace may have.
pub const MAX_NODES: usize = 1 << 21;
/// Deepest nesting of nodes.
pub const MAX_NODE_DEPTH: u32 = 320;
/// Most items (values and struct/array/variant brackets) of one event.
pub const MAX_ITEMS: usize = 1 << 22;

/// Index in [`Plan::nodes`].
pub type NodeId = u32;
const NO_SLOT: u32 = u32::MAX;

/// One field to decode.
#[derive(Debug, Clone)]
pub struct Node {
    /// Field name as declared (with CTF's `_` escape).
    pub name: String,
    /// What to decode.
    pub kind: Kind,
    /// Alignment in bits.
    pub align: u32,
    /// Smallest size in bits of a value of this node (to reject impossible lengths early).
    pub min_bits: u64,
    /// Slot written when this node is read (a tag or length target).
    pub slot: u32,
}

/// What a node decodes.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Integer.
    Int {
        /// Bits (1..=[`super::meta::MAX_INT_BITS`]; wider than 64 read as [`super::decode::Item::Wide`]).
        size: u32,
        /// Two's complement.
        signed: bool,
        /// Big-endian.
        be: bool,
        /// Display base (2, 8, 10, 16).
        base: u32,
        /// Clock updated by this field (index in the trace's clocks).
        clock: Option<u32>,
    },
    /// IEEE 754 float.
    Float {
        /// 64-bit (else 32-bit).
        double: bool,
        /// Big-endian.
        be: bool,
    },
    /// NUL-terminated string.
    Str,
    /// Enum: the integer, then its mappings (index in [`Plan::enums`]).
    Enum {
        /// Bits (1..=64).
        size: u32,
        /// Two's complement.
        signed: bool,
        /// Big-endian.
        be: bool,
        /// Display base of the container.
        base: u32,
        /// Clock updated by this field.
        clock: Option<u32>,
        /// Index in [`Plan::enums`].
        maps: u32,
    },
    /// Struct: its fields in order.
    Struct(Vec<NodeId>),
    /// Variant: tag slot, options and the tag-value → option table (index in
    /// [`Plan::variants`]).
    Variant {
        /// Slot holding the tag value.
        tag: u32,
        /// Index in [`Plan::variants`].
        table: u32,
    },
    /// Fixed-length array.
    Array {
        /// Element node.
        elem: NodeId,
        /// Element count.
        len: u64,
        /// Prints as a string (8-bit integers with an encoding).
        text: bool,
    },
    /// Sequence: an array whose length an earlier integer gives.
    Seq {
        /// Element node.
        elem: NodeId,
        /// Slot holding the length.
        len: u32,
        /// Prints as a string (8-bit integers with an encoding).
        text: bool,
    },
}

/// Options of a variant and which tag values select which option.
#[derive(Debug, Clone)]
pub struct VariantTable {
    /// Option nodes, in declaration order.
    pub options: Vec<NodeId>,
    /// `(lo, hi, option index)`, sorted by `lo`.
    pub ranges: Vec<(i128, i128, u32)>,
}

/// The decoding plan of a trace.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every node; scopes are roots in it.
    pub nodes: Vec<Node>,
    /// Enum mappings, indexed by [`Kind::Enum::maps`].
    pub enums: Vec<Vec<Mapping>>,
    /// Variant tables, indexed by [`Kind::Variant::table`].
    pub variants: Vec<VariantTable>,
    /// Number of tag/length slots.
    pub slots: u32,
}

/// A plan error: message and the metadata offset of the declaration it concerns.
pub type PlanError = String;

/// The dynamic scopes, in decoding order.
pub const SCOPE_NAMES: [&str; 6] = [
    "trace.packet.header",
    "stream.packet.context",
    "stream.event.header",
    "stream.event.context",
    "event.context",
    "event.fields",
];

/// Instantiate a scope's root type. `outer` holds the roots of the scopes decoded before it
/// (indexed like [`SCOPE_NAMES`]).
pub struct Builder<'m> {
    /// The declarations being instantiated.
    pub md: &'m Metadata,
    /// The plan built so far.
    pub plan: Plan,
    clock_names: Vec<String>,
}

struct Ctx<'a> {
    scope: usize,
    outer: &'a [Option<NodeId>; 6],
    /// Struct frames: fields declared so far.
    frames: Vec<Vec<(String, NodeId)>>,
    depth: u32,
    in_array: bool,
}

/// CTF 1.8 field names starting with `_` are shown without it (the underscore escapes
/// keywords), as babeltrace does.
pub fn display_name(n: &str) -> &str {
    n.strip_prefix('_').unwrap_or(n)
}

impl<'m> Builder<'m> {
    /// A builder with an empty plan.
    pub fn new(md: &'m Metadata) -> Self {
        Builder {
            md,
            plan: Plan::default(),
            clock_names: md.clocks.iter().map(|c| c.name.clone()).collect(),
        }
    }

    /// Build the nodes of scope `scope` (index in [`SCOPE_NAMES`]) from type `ty`.
    pub fn scope(
        &mut self,
        ty: TypeId,
        scope: usize,
        outer: &[Option<NodeId>; 6],
    ) -> Result<NodeId, PlanError> {
        let mut cx = Ctx {
            scope,
            outer,
            frames: Vec::new(),
            depth: 0,
            in_array: false,
        };
        let n = self.build(ty, String::new(), &mut cx)?;
        if !matches!(
            self.plan.nodes.get(n as usize).map(|x| &x.kind),
            Some(Kind::Struct(_))
        ) {
            return Err(format!("{} is not a struct", SCOPE_NAMES[scope]));
        }
        Ok(n)
    }

    fn push(&mut self, node: Node) -> Result<NodeId, PlanError> {
        if self.plan.nodes.len() >= MAX_NODES {
            return Err(format!(
                "the metadata's types expand to more than {MAX_NODES} fields"
            ));
        }
        self.plan.nodes.push(node);
        Ok((self.plan.nodes.len() - 1) as NodeId)
    }

    fn be(&self, o: Order) -> bool {
        match o {
            Order::Native => self.md.big_endian,
            Order::Le => false,
            Order::Be => true,
        }
    }

    fn clock(&self, i: &IntTy) -> Result<Option<u32>, PlanError> {
        match &i.clock {
            None => Ok(None),
            Some(c) => match self.clock_names.iter().position(|n| n == c) {
                Some(k) => Ok(Some(k as u32)),
                None => Err(format!("integer mapped to undeclared clock `{c}`")),
            },
        }
    }

    fn build(&mut self, ty: TypeId, name: String, cx: &mut Ctx) -> Result<NodeId, PlanError> {
        cx.depth += 1;
        if cx.depth > MAX_NODE_DEPTH {
            return Err(format!("types nested deeper than {MAX_NODE_DEPTH}"));
        }
        let r = self.build_inner(ty, name, cx);
        cx.depth -= 1;
        r
    }

    fn build_inner(&mut self, ty: TypeId, name: String, cx: &mut Ctx) -> Result<NodeId, PlanError> {
        let Some(t) = self.md.types.get(ty as usize) else {
            return Err("internal: bad type id".into());
        };
        let is_ts =
            (cx.scope == 2 && name == "timestamp") || (cx.scope == 1 && name == "timestamp_begin");
        let is_end = cx.scope == 1 && name == "timestamp_end";
        if let Ty::Int(i) = t {
            // The fields the reader interprets (packet framing, ids, times, counts) must fit
            // in 64 bits; wider integers are only values to print.
            let special = match cx.scope {
                0 => matches!(name.as_str(), "magic" | "stream_id" | "stream_instance_id"),
                1 => matches!(
                    name.as_str(),
                    "content_size"
                        | "packet_size"
                        | "timestamp_begin"
                        | "timestamp_end"
                        | "events_discarded"
                        | "packet_seq_num"
                        | "cpu_id"
                ),
                2 => matches!(name.as_str(), "id" | "timestamp"),
                _ => false,
            };
            if i.size > 64 && special {
                return Err(format!(
                    "`{name}` in {} has {} bits: at most 64 supported there",
                    SCOPE_NAMES[cx.scope], i.size
                ));
            }
        }
        let node = match t {
            Ty::Int(i) => Node {
                name,
                align: i.align,
                min_bits: u64::from(i.size),
                slot: NO_SLOT,
                kind: Kind::Int {
                    size: i.size,
                    signed: i.signed,
                    be: self.be(i.order),
                    base: i.base,
                    clock: match self.clock(i)? {
                        // Old LTTng traces leave their timestamps unmapped; babeltrace maps
                        // them to the (single) clock, and so does this reader.
                        None if self.clock_names.len() == 1 && is_ts => Some(0),
                        // The packet's end time is not a clock update (babeltrace agrees).
                        Some(_) if is_end => None,
                        c => c,
                    },
                },
            },
            Ty::Float {
                exp: _,
                mant,
                align,
                order,
            } => Node {
                name,
                align: *align,
                min_bits: if *mant == 53 { 64 } else { 32 },
                slot: NO_SLOT,
                kind: Kind::Float {
                    double: *mant == 53,
                    be: self.be(*order),
                },
            },
            Ty::Str => Node {
                name,
                align: 8,
                min_bits: 8,
                slot: NO_SLOT,
                kind: Kind::Str,
            },
            Ty::Enum { int, maps } => {
                self.plan.enums.push(maps.clone());
                Node {
                    name,
                    align: int.align,
                    min_bits: u64::from(int.size),
                    slot: NO_SLOT,
                    kind: Kind::Enum {
                        size: int.size,
                        signed: int.signed,
                        be: self.be(int.order),
                        base: int.base,
                        clock: self.clock(int)?,
                        maps: (self.plan.enums.len() - 1) as u32,
                    },
                }
            }
            Ty::Struct { fields, min_align } => {
                cx.frames.push(Vec::new());
                let mut kids = Vec::with_capacity(fields.len());
                let mut align = *min_align;
                let mut bits = 0u64;
                for (fname, fty) in fields {
                    let k = match self.build(*fty, fname.clone(), cx) {
                        Ok(k) => k,
                        Err(e) => {
                            cx.frames.pop();
                            return Err(e);
                        }
                    };
                    if let Some(n) = self.plan.nodes.get(k as usize) {
                        align = align.max(n.align);
                        bits = bits.saturating_add(n.min_bits);
                    }
                    kids.push(k);
                    if let Some(f) = cx.frames.last_mut() {
                        f.push((fname.clone(), k));
                    }
                }
                cx.frames.pop();
                Node {
                    name,
                    align,
                    min_bits: bits,
                    slot: NO_SLOT,
                    kind: Kind::Struct(kids),
                }
            }
            Ty::Variant { tag, options } => {
                let Some(tag) = tag else {
                    return Err(format!("variant `{name}` without a tag"));
                };
                let target = self.resolve(tag, cx)?;
                let maps = match self.plan.nodes.get(target as usize).map(|n| &n.kind) {
                    Some(Kind::Enum { maps, .. }) => *maps,
                    _ => return Err(format!("variant tag `{tag}` is not an enum")),
                };
                let slot = self.slot_of(target)?;
                let mut opts = Vec::with_capacity(options.len());
                let mut min_bits = u64::MAX;
                for (oname, oty) in options {
                    let k = self.build(*oty, oname.clone(), cx)?;
                    if let Some(n) = self.plan.nodes.get(k as usize) {
                        min_bits = min_bits.min(n.min_bits);
                    }
                    opts.push(k);
                }
                let mut ranges = Vec::new();
                // The first option whose name equals the label, `_` escape removed.
                let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(options.len());
                for (i, (o, _)) in options.iter().enumerate() {
                    by_name.entry(display_name(o)).or_insert(i);
                }
                for m in self.plan.enums.get(maps as usize).into_iter().flatten() {
                    let found = by_name.get(display_name(&m.label)).copied();
                    if let Some(i) = found {
                        ranges.push((m.lo, m.hi, i as u32));
                    }
                }
                ranges.sort_by_key(|r| r.0);
                self.plan.variants.push(VariantTable {
                    options: opts,
                    ranges,
                });
                Node {
                    name,
                    align: 1,
                    min_bits: if min_bits == u64::MAX { 0 } else { min_bits },
                    slot: NO_SLOT,
                    kind: Kind::Variant {
                        tag: slot,
                        table: (self.plan.variants.len() - 1) as u32,
                    },
                }
            }
            Ty::Array { elem, len } => {
                let saved = std::mem::replace(&mut cx.in_array, true);
                let e = self.build(*elem, String::new(), cx);
                cx.in_array = saved;
                let e = e?;
                let (align, ebits) = self.elem_info(e);
                let text = text_marker(self.md, *elem) && align % 8 == 0;
                Node {
                    name,
                    align,
                    min_bits: ebits.saturating_mul(*len),
                    slot: NO_SLOT,
                    kind: Kind::Array {
                        elem: e,
                        len: *len,
                        text,
                    },
                }
            }
            Ty::Seq { elem, len } => {
                let target = self.resolve(len, cx)?;
                match self.plan.nodes.get(target as usize).map(|n| &n.kind) {
                    Some(Kind::Int { .. }) | Some(Kind::Enum { .. }) => {}
                    _ => return Err(format!("sequence length `{len}` is not an integer")),
                }
                let slot = self.slot_of(target)?;
                let saved = std::mem::replace(&mut cx.in_array, true);
                let e = self.build(*elem, String::new(), cx);
                cx.in_array = saved;
                let e = e?;
                let (align, _) = self.elem_info(e);
                let text = text_marker(self.md, *elem) && align % 8 == 0;
                Node {
                    name,
                    align,
                    min_bits: 0,
                    slot: NO_SLOT,
                    kind: Kind::Seq {
                        elem: e,
                        len: slot,
                        text,
                    },
                }
            }
        };
        self.push(node)
    }

    fn elem_info(&self, e: NodeId) -> (u32, u64) {
        match self.plan.nodes.get(e as usize) {
            Some(n) => (n.align, n.min_bits),
            None => (1, 0),
        }
    }

    fn slot_of(&mut self, target: NodeId) -> Result<u32, PlanError> {
        let Some(n) = self.plan.nodes.get_mut(target as usize) else {
            return Ok(NO_SLOT);
        };
        if let Kind::Int { size, .. } | Kind::Enum { size, .. } = n.kind {
            if size > 64 {
                return Err(format!(
                    "`{}` ({size} bits) used as a sequence length or variant tag: at most 64 bits",
                    n.name
                ));
            }
        }
        if n.slot == NO_SLOT {
            n.slot = self.plan.slots;
            self.plan.slots += 1;
        }
        Ok(n.slot)
    }

    fn descend(&self, mut n: NodeId, rest: &[&str]) -> Option<NodeId> {
        for part in rest {
            let Kind::Struct(kids) = &self.plan.nodes.get(n as usize)?.kind else {
                return None;
            };
            n = *kids.iter().find(|&&k| {
                self.plan
                    .nodes
                    .get(k as usize)
                    .is_some_and(|x| x.name == *part)
            })?;
        }
        Some(n)
    }

    fn resolve(&self, path: &str, cx: &Ctx) -> Result<NodeId, PlanError> {
        let parts: Vec<&str> = path.split('.').collect();
        for (si, sname) in SCOPE_NAMES.iter().enumerate() {
            let sparts: Vec<&str> = sname.split('.').collect();
            if parts.len() > sparts.len() && parts[..sparts.len()] == sparts[..] {
                let rest = &parts[sparts.len()..];
                if si == cx.scope {
                    // Absolute path into the scope being built: its top frame.
                    return self.lexical(rest, cx, true, path);
                }
                let root = if si < cx.scope { cx.outer[si] } else { None };
                return root
                    .and_then(|r| self.descend(r, rest))
                    .ok_or_else(|| format!("`{path}` names no field decoded before it"));
            }
        }
        if let Ok(n) = self.lexical(&parts, cx, false, path) {
            return Ok(n);
        }
        for si in (0..cx.scope).rev() {
            if let Some(n) = cx.outer[si].and_then(|r| self.descend(r, &parts)) {
                return Ok(n);
            }
        }
        Err(format!("`{path}` names no field declared before it"))
    }

    fn lexical(
        &self,
        parts: &[&str],
        cx: &Ctx,
        top_only: bool,
        path: &str,
    ) -> Result<NodeId, PlanError> {
        let Some((first, rest)) = parts.split_first() else {
            return Err("empty path".into());
        };
        let frames: Vec<&Vec<(String, NodeId)>> = if top_only {
            cx.frames.first().into_iter().collect()
        } else {
            cx.frames.iter().rev().collect()
        };
        // Innermost first; a same-named field of another kind (a string hiding an outer
        // integer) does not stop the search.
        for f in frames {
            if let Some((_, n)) = f.iter().rev().find(|(nm, _)| nm == first) {
                if let Some(t) = self.descend(*n, rest) {
                    if matches!(
                        self.plan.nodes.get(t as usize).map(|x| &x.kind),
                        Some(Kind::Int { .. }) | Some(Kind::Enum { .. })
                    ) {
                        return Ok(t);
                    }
                }
            }
        }
        Err(format!("`{path}` names no field declared before it"))
    }
}

/// Mark 8-bit integer types declared with an encoding so that arrays of them print as text.
pub fn text_marker(md: &Metadata, ty: TypeId) -> bool {
    matches!(md.types.get(ty as usize), Some(Ty::Int(i)) if i.text && i.size == 8)
}
