//! Title search: every word of the query must match a word of the title's
//! name, exactly, as a prefix (typing in progress), or within a small edit
//! distance (a typo: one edit for words of four to seven letters, two from
//! eight). Pure, and small enough for a catalogue of tens of thousands of
//! titles scanned per query; a search library (tantivy and the like) would
//! bring an index to maintain and megabytes of code for what this does.

/// Lowercase alphanumeric words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`,
/// or `None` once beyond `max`.
pub fn distance(a: &str, b: &str, max: usize) -> Option<usize> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        let mut row_min = usize::MAX;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max {
            return None;
        }
    }
    let v = d[a.len() * w + b.len()];
    (v <= max).then_some(v)
}

/// How well one query word matches one name word: 3 exact, 2 prefix, 1 typo.
fn word_score(q: &str, w: &str) -> u32 {
    if q == w {
        return 3;
    }
    if w.starts_with(q) {
        return 2;
    }
    let n = q.chars().count();
    let max = match n {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    };
    // A typo in a word still being typed: compare with the name word's
    // start of the same length too.
    let head: String = w.chars().take(n).collect();
    if max > 0 && (distance(q, w, max).is_some() || distance(q, &head, max).is_some()) {
        return 1;
    }
    0
}

/// The query's match with a name: the sum of each query word's best word
/// score, or `None` when some query word matches nothing.
pub fn score(query: &[String], name: &str) -> Option<u32> {
    let ws = words(name);
    let mut total = 0;
    for q in query {
        let best = ws.iter().map(|w| word_score(q, w)).max().unwrap_or(0);
        if best == 0 {
            return None;
        }
        total += best;
    }
    Some(total)
}

/// The ids of `titles` (id, name) matching `query`, best first (then by name),
/// at most `limit`.
pub fn search<'a>(
    titles: impl Iterator<Item = (&'a str, &'a str)>,
    query: &str,
    limit: usize,
) -> Vec<&'a str> {
    let q = words(query);
    if q.is_empty() {
        return Vec::new();
    }
    let mut hits: Vec<(u32, &str, &str)> = titles
        .filter_map(|(id, name)| score(&q, name).map(|s| (s, name, id)))
        .collect();
    hits.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)).then(a.2.cmp(b.2)));
    hits.into_iter().take(limit).map(|(_, _, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TITLES: &[(&str, &str)] = &[
        ("t1", "The Long Night"),
        ("t2", "Night Shift"),
        ("t3", "Nightingale"),
        ("t4", "Long Way Home"),
        ("t5", "Kitchen Nightmares: Europe"),
    ];

    fn find(q: &str) -> Vec<&'static str> {
        search(TITLES.iter().copied(), q, 10)
    }

    #[test]
    fn exact_words_beat_prefixes_and_every_word_must_match() {
        // Exact before prefix; ties by name.
        assert_eq!(find("night"), ["t2", "t1", "t5", "t3"]);
        assert_eq!(find("long night"), ["t1"]);
        assert_eq!(find("Long"), ["t4", "t1"]);
        assert!(find("submarine").is_empty());
        assert!(find("  ").is_empty());
    }

    #[test]
    fn typing_in_progress_and_typos_are_found() {
        assert_eq!(find("nig"), ["t5", "t2", "t3", "t1"], "prefix");
        assert_eq!(find("nigth shift"), ["t2"], "swapped letters");
        assert_eq!(find("kitchn"), ["t5"], "a letter missing");
        assert_eq!(find("eurpoe"), ["t5"]);
        assert_eq!(find("nightngal"), ["t3"], "two edits in a long word");
        assert!(find("nxt").is_empty(), "short words need an exact start");
    }

    #[test]
    fn distance_counts_edits_and_stops_early() {
        assert_eq!(distance("night", "night", 1), Some(0));
        assert_eq!(distance("nigth", "night", 1), Some(1));
        assert_eq!(distance("kitten", "sitting", 3), Some(3));
        assert_eq!(distance("kitten", "sitting", 2), None);
        assert_eq!(distance("a", "abcd", 2), None);
    }
}
