//! Fault injection for reliability tests: make the next N matching requests fail.

/// What happens to a request that a fault rule catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this HTTP status (and a matching `Status` body), changing nothing.
    Status(u16),
    /// Never answer: the client's own timeout must end the request.
    Hang,
    /// Close the connection before the request is carried out.
    DropBefore,
    /// Carry the request out, then close the connection without answering: the write
    /// happened but the client cannot know it.
    DropAfter,
}

/// Catches the next `count` requests whose verb and resource match (`None` matches any),
/// after letting `skip` of them through.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub verb: Option<String>,
    pub resource: Option<String>,
    pub skip: u32,
    pub count: u32,
    pub action: FaultAction,
}

impl FaultRule {
    pub fn new(
        verb: Option<&str>,
        resource: Option<&str>,
        count: u32,
        action: FaultAction,
    ) -> Self {
        Self {
            verb: verb.map(String::from),
            resource: resource.map(String::from),
            skip: 0,
            count,
            action,
        }
    }

    /// Lets the first `skip` matching requests through (a fault at the second page, say).
    pub fn after(mut self, skip: u32) -> Self {
        self.skip = skip;
        self
    }

    fn matches(&self, verb: &str, resource: &str) -> bool {
        self.count > 0
            && self.verb.as_deref().is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource)
    }
}

#[derive(Default)]
pub struct Faults(Vec<FaultRule>);

impl Faults {
    pub fn add(&mut self, rule: FaultRule) {
        self.0.push(rule);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Consumes one use of the first rule that matches.
    pub fn take(&mut self, verb: &str, resource: &str) -> Option<FaultAction> {
        let rule = self.0.iter_mut().find(|r| r.matches(verb, resource))?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rule.count -= 1;
        Some(rule.action)
    }
}
