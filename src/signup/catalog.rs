//! The newsletters readers can pick, as configured and stored.

use crate::domain::{Newsletter, NewsletterSlug};

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    newsletters: Vec<Newsletter>,
}

impl Catalog {
    pub fn new(newsletters: Vec<Newsletter>) -> Self {
        Self { newsletters }
    }

    pub fn all(&self) -> &[Newsletter] {
        &self.newsletters
    }

    pub fn by_slug(&self, slug: &NewsletterSlug) -> Option<&Newsletter> {
        self.newsletters.iter().find(|n| &n.slug == slug)
    }

    pub fn by_id(&self, id: i64) -> Option<&Newsletter> {
        self.newsletters.iter().find(|n| n.id == id)
    }

    /// Names of the given newsletters in catalog order, skipping unknown ids.
    pub fn names(&self, ids: &[i64]) -> Vec<String> {
        self.newsletters.iter().filter(|n| ids.contains(&n.id)).map(|n| n.name.clone()).collect()
    }
}
