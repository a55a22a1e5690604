//! What to fetch now: the plan's objects that are not on disk, in plan
//! priority, limited to urgent items outside the window and to whole items
//! that fit in the space available.

use control_client::wire::{FillItem, FillObject, FillPlan};

/// One object to fetch, with the item it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub item: &'a FillItem,
    pub object: &'a FillObject,
}

/// Missing objects in priority order. `present(key)` gives the size on disk;
/// an object of another size counts as missing (it will be replaced).
pub fn missing<'a>(
    plan: &'a FillPlan,
    present: impl Fn(&str) -> Option<u64>,
    window_open: bool,
) -> Vec<Wanted<'a>> {
    plan.items
        .iter()
        .filter(|item| window_open || item.urgent)
        .flat_map(|item| {
            item.objects
                .iter()
                .map(move |object| Wanted { item, object })
        })
        .filter(|w| present(&w.object.key) != Some(w.object.size))
        .collect()
}

/// Whether fetching `item` may start at `now`: inside the window or urgent,
/// and not before the time the plan staggers it to.
pub fn startable(item: &FillItem, window_open: bool, now: u64) -> bool {
    (window_open || item.urgent) && item.not_before.is_none_or(|t| t <= now)
}

/// Take whole items, in order, while their missing bytes fit in `free`; stop at
/// the first that does not (a lower-priority item never jumps a higher one).
/// Returns what to fetch and how many bytes were left out.
pub fn fit<'a>(wanted: Vec<Wanted<'a>>, free: u64) -> (Vec<Wanted<'a>>, u64) {
    let mut out = Vec::with_capacity(wanted.len());
    let mut used = 0u64;
    let mut left_out = 0u64;
    let mut i = 0;
    while i < wanted.len() {
        let item = &wanted[i].item.rendition;
        let j = wanted[i..]
            .iter()
            .position(|w| &w.item.rendition != item)
            .map_or(wanted.len(), |n| i + n);
        let bytes: u64 = wanted[i..j].iter().map(|w| w.object.size).sum();
        if left_out == 0 && used.saturating_add(bytes) <= free {
            used += bytes;
            out.extend_from_slice(&wanted[i..j]);
        } else {
            left_out += bytes;
        }
        i = j;
    }
    (out, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_client::wire::FillWindow;

    fn item(r: &str, urgent: bool, sizes: &[u64]) -> FillItem {
        FillItem {
            rendition: r.into(),
            title: "t".into(),
            score: 1.0,
            urgent,
            not_before: None,
            bytes: sizes.iter().sum(),
            objects: sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| FillObject {
                    key: format!("{r}/{i}"),
                    size,
                    sha256: String::new(),
                })
                .collect(),
            sources: vec![],
        }
    }

    fn plan(items: Vec<FillItem>) -> FillPlan {
        FillPlan {
            appliance: "a".into(),
            version: 1,
            generated_at: 0,
            expires: 0,
            window: FillWindow {
                start: "02:00".into(),
                end: "06:00".into(),
                utc_offset_minutes: 0,
            },
            budget_bytes: 0,
            items,
        }
    }

    fn keys(w: &[Wanted<'_>]) -> Vec<String> {
        w.iter().map(|w| w.object.key.clone()).collect()
    }

    #[test]
    fn missing_respects_window_priority_and_what_is_on_disk() {
        let p = plan(vec![
            item("u", true, &[10]),
            item("a", false, &[5, 5]),
            item("b", false, &[7]),
        ]);
        let present = |k: &str| match k {
            "a/0" => Some(5),
            "b/0" => Some(6), // wrong size: replaced
            _ => None,
        };
        assert_eq!(keys(&missing(&p, present, true)), ["u/0", "a/1", "b/0"]);
        assert_eq!(
            keys(&missing(&p, present, false)),
            ["u/0"],
            "outside the window: urgent only"
        );
    }

    #[test]
    fn a_staggered_launch_waits_for_its_time_even_though_urgent() {
        let mut launch = item("l", true, &[1]);
        launch.not_before = Some(1_000);
        assert!(!startable(&launch, true, 999));
        assert!(
            startable(&launch, false, 1_000),
            "urgent: any time once due"
        );
        let plain = item("p", false, &[1]);
        assert!(startable(&plain, true, 0));
        assert!(!startable(&plain, false, 0));
    }

    #[test]
    fn whole_items_in_order_while_they_fit() {
        let p = plan(vec![
            item("a", false, &[5, 5]),
            item("b", false, &[20]),
            item("c", false, &[1]),
        ]);
        let all = missing(&p, |_| None, true);
        let (take, left) = fit(all.clone(), 12);
        assert_eq!(keys(&take), ["a/0", "a/1"]);
        assert_eq!(left, 21, "c would fit but must not jump b");
        let (take, left) = fit(all.clone(), 100);
        assert_eq!((take.len(), left), (4, 0));
        let (take, left) = fit(all, 9);
        assert_eq!((take.len(), left), (0, 31), "half an item is never fetched");
    }
}
