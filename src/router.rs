//! Routing: a trie of subscription patterns, so that finding the subscriptions a topic matches
//! costs time in the topic's length and the matches, not in the number of subscriptions.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A trie of patterns; each entry is a value (a subscription) stored under its pattern and id.
pub struct Router<T> {
    root: Node<T>,
    len: usize,
}

struct Node<T> {
    /// Children by literal token.
    children: HashMap<Box<str>, Node<T>, BuildHasherDefault<FxHasher>>,
    /// Child for a `*` token.
    star: Option<Box<Node<T>>>,
    /// Entries whose pattern ends at this node.
    here: Vec<(i64, T)>,
    /// Entries whose pattern ends with `>` after this node.
    rest: Vec<(i64, T)>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            children: HashMap::default(),
            star: None,
            here: Vec::new(),
            rest: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.star.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T> Router<T> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `value` under a checked `pattern`.
    pub fn insert(&mut self, pattern: &str, id: i64, value: T) {
        let mut node = &mut self.root;
        let mut tokens = pattern.split('.').peekable();
        while let Some(token) = tokens.next() {
            if token == ">" && tokens.peek().is_none() {
                node.rest.push((id, value));
                self.len += 1;
                return;
            }
            node = if token == "*" {
                node.star.get_or_insert_with(Box::default)
            } else {
                node.children.entry(token.into()).or_default()
            };
        }
        node.here.push((id, value));
        self.len += 1;
    }

    /// Removes the entry `id` stored under `pattern`, pruning nodes left empty.
    pub fn remove(&mut self, pattern: &str, id: i64) -> Option<T> {
        let tokens: Vec<&str> = pattern.split('.').collect();
        let found = remove_in(&mut self.root, &tokens, id);
        if found.is_some() {
            self.len -= 1;
        }
        found
    }

    /// Calls `visit` once for every entry whose pattern matches the checked `topic`. A
    /// wildcard never matches a first token `_INBOX` (reply topics): only patterns that name it
    /// see replies.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(&'a T)) {
        let t = topic.as_bytes();
        let inbox = t.starts_with(b"_INBOX") && t.get(6).map_or(true, |b| *b == b'.');
        if !inbox {
            return walk(&self.root, Some(topic), &mut visit);
        }
        let (first, rest) = topic.split_once('.').unwrap_or((topic, ""));
        if let Some(child) = self.root.children.get(first) {
            walk(child, (!rest.is_empty()).then_some(rest), &mut visit);
        }
    }

    /// Every entry, in no particular order.
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = vec![std::mem::take(&mut self.root)];
        while let Some(mut node) = stack.pop() {
            out.extend(node.here.drain(..).map(|(_, v)| v));
            out.extend(node.rest.drain(..).map(|(_, v)| v));
            stack.extend(node.children.drain().map(|(_, c)| c));
            stack.extend(node.star.take().map(|b| *b));
        }
        self.len = 0;
        out
    }
}

/// Visits the matches of `tokens`, the topic's tokens not yet walked (`None`: all walked),
/// below `node`. Recursion is at most one level per token (128 at most).
fn walk<'a, T>(node: &'a Node<T>, tokens: Option<&str>, visit: &mut impl FnMut(&'a T)) {
    let Some(tokens) = tokens else {
        node.here.iter().for_each(|(_, v)| visit(v));
        return;
    };
    node.rest.iter().for_each(|(_, v)| visit(v));
    // A byte loop: topics' tokens are short, and `split_once` goes through memchr's setup.
    let (first, rest) = match tokens.bytes().position(|b| b == b'.') {
        Some(dot) => (&tokens[..dot], Some(&tokens[dot + 1..])),
        None => (tokens, None),
    };
    if let Some(child) = node.children.get(first) {
        walk(child, rest, visit);
    }
    if let Some(star) = &node.star {
        walk(star, rest, visit);
    }
}

fn remove_in<T>(node: &mut Node<T>, tokens: &[&str], id: i64) -> Option<T> {
    let take = |list: &mut Vec<(i64, T)>| {
        list.iter()
            .position(|(i, _)| *i == id)
            .map(|at| list.swap_remove(at).1)
    };
    match tokens {
        [] => take(&mut node.here),
        [">"] => take(&mut node.rest),
        [first, rest @ ..] if *first == "*" => {
            let star = node.star.as_mut()?;
            let found = remove_in(star, rest, id);
            if star.is_empty() {
                node.star = None;
            }
            found
        }
        [first, rest @ ..] => {
            let child = node.children.get_mut(*first)?;
            let found = remove_in(child, rest, id);
            if child.is_empty() {
                node.children.remove(*first);
            }
            found
        }
    }
}

/// A map keyed by ids that the library hands out itself (subscriptions, timers, requests):
/// hashed with [`FxHasher`], not std's `RandomState`, since nobody chooses the keys, and
/// `RandomState` takes a thread-local on every thread that makes a map (on Windows an OS TLS
/// index that std never gives back, one per load of the DLL).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The Fx hash (from rustc): a multiply and a rotate per word; tokens are short and come from
/// the host program, so speed matters and flooding is not a threat.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    fn matched(r: &Router<i64>, topic: &str) -> Vec<i64> {
        let mut v = Vec::new();
        r.for_each_match(topic, |x| v.push(*x));
        v.sort();
        v
    }

    const PATTERNS: [&str; 12] = [
        "a", "a.b", "a.*", "a.>", "*", ">", "*.b", "*.*.c", "a.b.c", "x.>", "a.*.>", "*.>",
    ];
    const TOPICS: [&str; 8] = ["a", "a.b", "a.b.c", "b", "x.y", "x", "q.b", "a.q.c"];

    #[test]
    fn agrees_with_the_reference_matcher() {
        let mut r = Router::default();
        for (i, p) in PATTERNS.iter().enumerate() {
            r.insert(p, i as i64, i as i64);
        }
        assert_eq!(r.len(), PATTERNS.len());
        for t in TOPICS {
            let want: Vec<i64> = (0..PATTERNS.len() as i64)
                .filter(|&i| matches(PATTERNS[i as usize], t))
                .collect();
            assert_eq!(matched(&r, t), want, "topic {t}");
        }
    }

    #[test]
    fn remove_prunes_and_keeps_the_rest() {
        let mut r = Router::default();
        for (i, p) in PATTERNS.iter().enumerate() {
            r.insert(p, i as i64, i as i64);
        }
        for (i, p) in PATTERNS.iter().enumerate() {
            assert_eq!(r.remove(p, i as i64), Some(i as i64));
            assert_eq!(r.remove(p, i as i64), None);
            for t in TOPICS {
                assert!(!matched(&r, t).contains(&(i as i64)));
            }
        }
        assert!(r.is_empty());
        assert!(r.root.is_empty(), "every node pruned");
    }

    #[test]
    fn same_pattern_many_ids_and_drain() {
        let mut r = Router::default();
        for i in 0..5 {
            r.insert("a.>", i, i);
        }
        assert_eq!(matched(&r, "a.b"), vec![0, 1, 2, 3, 4]);
        r.remove("a.>", 2);
        assert_eq!(matched(&r, "a.b"), vec![0, 1, 3, 4]);
        let mut all = r.drain();
        all.sort();
        assert_eq!(all, vec![0, 1, 3, 4]);
        assert!(r.is_empty() && matched(&r, "a.b").is_empty());
    }

    #[test]
    fn wildcards_never_match_a_first_token_inbox() {
        let mut r = Router::default();
        let patterns = [
            ">",
            "*",
            "*.>",
            "*.a.1",
            "_INBOX.>",
            "_INBOX.a.*",
            "_INBOX",
            "_INBOXES.>",
        ];
        for (i, p) in patterns.iter().enumerate() {
            r.insert(p, i as i64, i as i64);
        }
        assert_eq!(matched(&r, "_INBOX.a.1"), vec![4, 5]);
        assert_eq!(matched(&r, "_INBOX"), vec![6]);
        assert_eq!(
            matched(&r, "_INBOXES.a"),
            vec![0, 2, 7],
            "only the token _INBOX is special"
        );
        assert_eq!(matched(&r, "x._INBOX"), vec![0, 2]);
    }
}
