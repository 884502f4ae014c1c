//! Reading tickets by index: the queue (by status or assignee, oldest first,
//! page by page), a status's whole backlog, and the tickets closed in a window.

use super::store::{ReviewStore, ticket_from};
use super::totals::day_of;
use super::{Ticket, TicketStatus};
use crate::dynamo::{Item, StoreError, get_n, get_s, n, s};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::BTreeMap;

impl ReviewStore {
    /// The `by-status` query for one status (oldest first).
    fn status_query(
        &self,
        status: TicketStatus,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name("by-status")
            .key_condition_expression("#status = :s")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":s", s(status.as_str()))
    }

    /// Tickets of one status, oldest first, from the `by-status` index.
    pub async fn by_status(
        &self,
        status: TicketStatus,
        limit: usize,
    ) -> Result<Vec<Ticket>, StoreError> {
        let page = self
            .status_query(status)
            .limit(limit.clamp(1, 100) as i32)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        page.items().iter().map(ticket_from).collect()
    }
}

/// A closed ticket as the `by-closed` index projects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedTicket {
    pub status: TicketStatus,
    pub created_at: i64,
    pub closed_at: i64,
    pub closed_by: String,
}

impl ReviewStore {
    /// Every ticket of a status, oldest first. Meant for the live queue (`open`,
    /// `in_review`): its size is the backlog, not the history.
    pub async fn all_with_status(&self, status: TicketStatus) -> Result<Vec<Ticket>, StoreError> {
        self.query_all(self.status_query(status))
            .await?
            .iter()
            .map(ticket_from)
            .collect()
    }

    /// Tickets closed at or after `since` (up to `until`), from the `by-closed`
    /// index: one query per UTC day in the window.
    pub async fn closed_between(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Vec<ClosedTicket>, StoreError> {
        const DAY_MS: i64 = 86_400_000;
        let mut out = Vec::new();
        let mut day_start = since - since.rem_euclid(DAY_MS);
        while day_start <= until {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("by-closed")
                .key_condition_expression(
                    "closed_day = :day AND closed_at BETWEEN :since AND :until",
                )
                .expression_attribute_values(":day", s(&day_of(day_start)))
                .expression_attribute_values(":since", n(since))
                .expression_attribute_values(":until", n(until));
            for item in self.query_all(query).await? {
                let status = get_s(&item, "status").and_then(|v| TicketStatus::parse(&v));
                let (Some(status), Some(created_at), Some(closed_at)) = (
                    status,
                    get_n(&item, "created_at"),
                    get_n(&item, "closed_at"),
                ) else {
                    return Err(StoreError::Internal(
                        "closed ticket without its times".into(),
                    ));
                };
                out.push(ClosedTicket {
                    status,
                    created_at,
                    closed_at,
                    closed_by: get_s(&item, "closed_by").unwrap_or_default(),
                });
            }
            day_start += DAY_MS;
        }
        Ok(out)
    }
}

/// What a queue listing asks for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Empty: every status.
    pub statuses: Vec<TicketStatus>,
    pub assignee: Option<String>,
    /// Only tickets created at or before this time (epoch ms): "older than".
    pub created_before: Option<i64>,
    pub limit: usize,
}

/// One index a listing reads: its name in the cursor, the index, and the key it queries.
struct Source {
    name: String,
    index: &'static str,
    key_attr: &'static str,
    key_value: String,
}

/// Where a source's page ended.
#[derive(Debug, Clone)]
enum PageEnd {
    /// Not queried this time (exhausted on an earlier page).
    NotRead,
    Exhausted,
    /// DynamoDB stopped at this key; there may be more.
    More(Item),
}

/// A page of the queue, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone)]
pub struct ListPage {
    pub tickets: Vec<Ticket>,
    pub next: Option<ListCursor>,
}

/// Where each source of a listing stands: the index key to continue after
/// (values written `S:…` or `N:…`), or `None` once exhausted. Absent: not started.
pub type ListCursor = BTreeMap<String, Option<BTreeMap<String, String>>>;

fn key_to_cursor(item: &Item, attrs: &[&str]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .filter_map(|a| {
            let v = item.get(*a)?;
            v.as_s()
                .map(|s| format!("S:{s}"))
                .or_else(|_| v.as_n().map(|n| format!("N:{n}")))
                .ok()
                .map(|v| (a.to_string(), v))
        })
        .collect()
}

fn cursor_to_key(key: &BTreeMap<String, String>) -> Item {
    key.iter()
        .filter_map(|(k, v)| match v.split_once(':') {
            Some(("S", s)) => Some((k.clone(), AttributeValue::S(s.to_string()))),
            Some(("N", n)) => Some((k.clone(), AttributeValue::N(n.to_string()))),
            _ => None,
        })
        .collect()
}

impl ReviewStore {
    /// Tickets oldest first, merged from the `by-status` index of each asked
    /// status (or from `by-assignee`), each source resuming from the cursor.
    /// Returns the next cursor while any source has more.
    pub async fn list(
        &self,
        query: &ListQuery,
        cursor: &ListCursor,
    ) -> Result<ListPage, StoreError> {
        let limit = query.limit.clamp(1, 100);
        let statuses = if query.statuses.is_empty() {
            TicketStatus::ALL.to_vec()
        } else {
            query.statuses.clone()
        };
        // One source per status, or the assignee's index (filtered by status when asked).
        let sources: Vec<Source> = match &query.assignee {
            Some(who) => vec![Source {
                name: "assignee".into(),
                index: "by-assignee",
                key_attr: "assigned_to",
                key_value: who.clone(),
            }],
            None => statuses
                .iter()
                .map(|st| Source {
                    name: st.as_str().to_string(),
                    index: "by-status",
                    key_attr: "status",
                    key_value: st.as_str().to_string(),
                })
                .collect(),
        };
        let mut next = cursor.clone();
        // (source, ticket, item) of every fetched candidate, and each source's page end.
        let mut candidates: Vec<(usize, Ticket, Item)> = Vec::new();
        let mut page_ends: Vec<PageEnd> = vec![PageEnd::NotRead; sources.len()];
        for (i, source) in sources.iter().enumerate() {
            let Source {
                name,
                index,
                key_attr,
                key_value,
            } = source;
            let start = match cursor.get(name) {
                Some(None) => continue,
                Some(Some(key)) => Some(cursor_to_key(key)),
                None => None,
            };
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(*index)
                .expression_attribute_names("#k", *key_attr)
                .expression_attribute_values(":k", s(key_value))
                .limit(limit as i32)
                .set_exclusive_start_key(start);
            request = match query.created_before {
                Some(before) => request
                    .key_condition_expression("#k = :k AND created_at <= :before")
                    .expression_attribute_values(":before", n(before)),
                None => request.key_condition_expression("#k = :k"),
            };
            if query.assignee.is_some() && !query.statuses.is_empty() {
                let names: Vec<String> = (0..statuses.len()).map(|j| format!(":s{j}")).collect();
                request = request
                    .filter_expression(format!("#status IN ({})", names.join(", ")))
                    .expression_attribute_names("#status", "status");
                for (j, st) in statuses.iter().enumerate() {
                    request = request.expression_attribute_values(format!(":s{j}"), s(st.as_str()));
                }
            }
            let page = request.send().await.map_err(StoreError::from_sdk)?;
            for item in page.items() {
                candidates.push((i, ticket_from(item)?, item.clone()));
            }
            page_ends[i] = match page.last_evaluated_key() {
                Some(key) => PageEnd::More(key.clone()),
                None => PageEnd::Exhausted,
            };
        }
        candidates.sort_by(|a, b| {
            a.1.created_at
                .cmp(&b.1.created_at)
                .then(a.1.ticket_id.cmp(&b.1.ticket_id))
        });
        let fetched_per_source = |i: usize| candidates.iter().filter(|c| c.0 == i).count();
        let counts: Vec<usize> = (0..sources.len()).map(fetched_per_source).collect();
        let taken: Vec<(usize, Ticket, Item)> = candidates.into_iter().take(limit).collect();
        for (i, Source { name, key_attr, .. }) in sources.iter().enumerate() {
            let key_attrs = ["ticket_id", "item", "created_at", key_attr];
            let taken_here: Vec<&(usize, Ticket, Item)> =
                taken.iter().filter(|t| t.0 == i).collect();
            let resume = match &page_ends[i] {
                PageEnd::NotRead => continue,
                // Everything fetched from it was used: continue where DynamoDB stopped, or it is done.
                PageEnd::Exhausted if taken_here.len() == counts[i] => None,
                PageEnd::More(key) if taken_here.len() == counts[i] => Some(key),
                // Some of its tickets wait for the next page: continue after the last one shown.
                _ => match taken_here.last() {
                    Some(last) => Some(&last.2),
                    None => continue,
                },
            };
            next.insert(name.clone(), resume.map(|k| key_to_cursor(k, &key_attrs)));
        }
        let more = sources
            .iter()
            .any(|source| next.get(&source.name).is_none_or(Option::is_some));
        Ok(ListPage {
            tickets: taken.into_iter().map(|t| t.1).collect(),
            next: more.then_some(next),
        })
    }
}
