//! Walking the Secrets of a class in scope a page of headers (metadata only) at a time, so
//! a batch holds at most a page of names and a few Secrets' data, whatever their number
//! and size. Each command fetches a Secret's data when it handles that Secret.

use futures::stream::{self, Stream, StreamExt as _};

use super::Context;
use crate::domain::bootstrap::SecretHeader;
use crate::domain::names::Class;
use crate::domain::Scope;
use crate::error::Result;

/// Where the walk stands: the namespaces still to list (`None`: all of them) and,
/// mid-namespace, that namespace with the continue token of its next page.
struct Walk<'a> {
    ctx: &'a Context,
    selector: String,
    namespaces: std::vec::IntoIter<Option<String>>,
    resume: Option<(Option<String>, String)>,
}

impl Walk<'_> {
    async fn next_page(&mut self) -> Option<Result<Vec<SecretHeader>>> {
        let (namespace, token) = match self.resume.take() {
            Some((namespace, token)) => (namespace, Some(token)),
            None => (self.namespaces.next()?, None),
        };
        let page = async {
            let (page, next) = self
                .ctx
                .kube()?
                .list_secret_headers(namespace.as_deref(), &self.selector, token)
                .await?;
            if let Some(token) = next {
                self.resume = Some((namespace, token));
            }
            Ok(page)
        }
        .await;
        if page.is_err() {
            self.namespaces = Vec::new().into_iter(); // a failed listing ends the walk
        }
        Some(page)
    }
}

/// The headers of `class` Secrets in scope (ANDed with `selector`), in namespace then name
/// order, listed a page at a time as the stream is read; a page that cannot be listed is
/// the last item.
pub fn headers<'a>(
    ctx: &'a Context,
    class: Class,
    scope: &Scope,
    selector: Option<&str>,
) -> Result<impl Stream<Item = Result<SecretHeader>> + 'a> {
    let walk = Walk {
        ctx,
        selector: class.selector(selector),
        namespaces: ctx.namespaces(scope)?.into_iter(),
        resume: None,
    };
    let pages = stream::unfold(walk, |mut walk| async {
        let page = walk.next_page().await?;
        Some((page, walk))
    });
    Ok(pages.flat_map(|page| match page {
        Ok(headers) => stream::iter(headers).map(Ok).left_stream(),
        Err(error) => stream::once(std::future::ready(Err(error))).right_stream(),
    }))
}
