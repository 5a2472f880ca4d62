//! Interned names (users, media package ids): each name once, in one contiguous text, found
//! through a table of 4-byte ids. A look-up compares the name with text that lies close
//! together in memory, where a table of `String`s (each its own allocation) cost a cache miss
//! per new session: 4% of a Paella 7 report.

use std::hash::BuildHasher;

/// Names and their ids (0, 1, 2... in order of first appearance).
#[derive(Default)]
pub struct Names {
    text: String,
    /// Where each name ends in `text` (it starts where the one before ends).
    ends: Vec<usize>,
    ids: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::FixedState,
}

impl Names {
    /// The name of `id` (an id [`Names::intern`] gave).
    pub fn get(&self, id: u32) -> &str {
        name(&self.text, &self.ends, id)
    }

    /// The id of `s`, given now if it has none yet.
    pub fn intern(&mut self, s: &str) -> u32 {
        let h = self.hasher.hash_one(s);
        if let Some(id) = self.ids.find(h, |&id| self.get(id) == s) {
            return *id;
        }
        let id = self.ends.len() as u32;
        self.text.push_str(s);
        self.ends.push(self.text.len());
        let (text, ends, hasher) = (&self.text, &self.ends, &self.hasher);
        self.ids
            .insert_unique(h, id, |&i| hasher.hash_one(name(text, ends, i)));
        id
    }

    /// Every name, in id order.
    pub fn into_strings(self) -> Vec<String> {
        (0..self.ends.len() as u32)
            .map(|i| self.get(i).to_string())
            .collect()
    }
}

fn name<'a>(text: &'a str, ends: &[usize], id: u32) -> &'a str {
    let i = id as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &text[start..ends[i]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_one_id_each_in_order_of_appearance() {
        let mut n = Names::default();
        let words = ["", "b", "ab", "a", "b", "", "ab", "ä€", "a"];
        let ids: Vec<u32> = words.iter().map(|w| n.intern(w)).collect();
        assert_eq!(ids, [0, 1, 2, 3, 1, 0, 2, 4, 3]);
        for (w, i) in words.iter().zip(&ids) {
            assert_eq!(n.get(*i), *w);
        }
        // Many names: the table grows and every id still finds its name.
        for k in 0..10_000 {
            assert_eq!(n.intern(&format!("user-{k}")), 5 + k);
        }
        assert_eq!(n.intern("user-1234"), 5 + 1234);
        let all = n.into_strings();
        assert_eq!(all.len(), 10_005);
        assert_eq!(all[4], "ä€");
        assert_eq!(all[7], "user-2");
    }
}
