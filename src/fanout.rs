//! Which member of a queue group gets a message: among the members that match it, one with
//! room in its queue, the least loaded, and of those the one picked longest ago - so that idle
//! members take turns.

use crate::subscription::Subscription;
use std::sync::Arc;

/// Replaces, in `matches`, the members of each group by the one member that gets the message.
/// `turn` counts picks (under the bus lock); each pick records it on the member picked.
pub fn pick_group_members(matches: &mut Vec<&Arc<Subscription>>, turn: &mut u64) {
    if matches.iter().all(|s| s.options.group.is_none()) {
        return;
    }
    *matches = picked(matches, turn);
}

/// The members of `sub`'s group among `matches`, or `sub` alone: what a publish held back by
/// `sub` waits for (room in any of them lets it go on).
pub fn room_to_wait_for<'a>(
    matches: &[&'a Arc<Subscription>],
    sub: &'a Arc<Subscription>,
) -> Vec<Arc<Subscription>> {
    match sub.options.group.as_deref() {
        None => vec![sub.clone()],
        Some(g) => matches
            .iter()
            .filter(|m| m.options.group.as_deref() == Some(g))
            .map(|m| (*m).clone())
            .collect(),
    }
}

fn picked<'a>(matches: &[&'a Arc<Subscription>], turn: &mut u64) -> Vec<&'a Arc<Subscription>> {
    let mut out = Vec::with_capacity(matches.len());
    let mut groups: Vec<&str> = Vec::new();
    for (i, sub) in matches.iter().enumerate() {
        match sub.options.group.as_deref() {
            None => out.push(*sub),
            Some(g) if groups.contains(&g) => {}
            Some(g) => {
                groups.push(g);
                let members: Vec<&Arc<Subscription>> = matches[i..]
                    .iter()
                    .filter(|m| m.options.group.as_deref() == Some(g))
                    .copied()
                    .collect();
                *turn += 1;
                let picked = pick(&members);
                picked.picked_at(*turn);
                out.push(picked);
            }
        }
    }
    out
}

/// The member with room, the fewest queued messages and the oldest pick; if none has room,
/// the one picked longest ago (whose own policy then applies).
fn pick<'a>(members: &[&'a Arc<Subscription>]) -> &'a Arc<Subscription> {
    let with_room = members.iter().filter(|m| m.has_room());
    let best = with_room.min_by_key(|m| (m.queued(), m.last_picked()));
    best.copied().unwrap_or_else(|| {
        members
            .iter()
            .min_by_key(|m| m.last_picked())
            .copied()
            .unwrap_or(members[0])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::options::SubscribeOptions;
    use crate::subscription::Consumer;

    fn sub(id: i64, group: Option<&str>, limit: usize) -> Arc<Subscription> {
        let options = SubscribeOptions {
            group: group.map(Into::into),
            queue_limit: limit,
            ..SubscribeOptions::default()
        };
        Arc::new(Subscription::new(id, ">", options, Consumer::Pull))
    }

    fn ids(v: &[&Arc<Subscription>]) -> Vec<i64> {
        v.iter().map(|s| s.id).collect()
    }

    #[test]
    fn one_member_per_group_and_turns_when_idle() {
        let subs = [
            sub(1, None, 0),
            sub(2, Some("g"), 0),
            sub(3, Some("h"), 0),
            sub(4, Some("g"), 0),
        ];
        let mut turn = 0;
        let mut counts = [0; 5];
        for _ in 0..10 {
            let mut m: Vec<&Arc<Subscription>> = subs.iter().collect();
            pick_group_members(&mut m, &mut turn);
            assert_eq!(m.len(), 3, "{:?}", ids(&m));
            assert_eq!(m[0].id, 1);
            for s in &m {
                counts[s.id as usize] += 1;
            }
        }
        assert_eq!(counts, [0, 10, 5, 10, 5], "g's members take turns");
    }

    #[test]
    fn a_full_member_is_passed_over() {
        let subs = [sub(1, Some("g"), 1), sub(2, Some("g"), 1)];
        subs[0].push(Arc::new(Message::new("a", b"1", "")));
        let mut turn = 0;
        for _ in 0..4 {
            let mut m: Vec<&Arc<Subscription>> = subs.iter().collect();
            pick_group_members(&mut m, &mut turn);
            assert_eq!(ids(&m), [2]);
        }
        subs[1].push(Arc::new(Message::new("a", b"1", "")));
        let mut m: Vec<&Arc<Subscription>> = subs.iter().collect();
        pick_group_members(&mut m, &mut turn);
        assert_eq!(ids(&m), [1], "all full: the member picked longest ago");
    }
}
