//! Tickets in DynamoDB (reviews table, key `ticket_id` + `item`).
//!
//! - `item = "ticket"`: the ticket; the `by-status` and `by-assignee` indexes
//!   (keyed by `created_at`) serve the queue oldest first, never by a scan.
//! - `item = "note#…"`, `"history#0001"…`: notes and the change history, one
//!   item each, so no ticket item grows without bound.
//! - `ticket_id = "task#<task_id>", item = "open"`: the marker that keeps one
//!   open ticket per task; written when a ticket opens, deleted when it closes,
//!   in the same transaction.
//! - `ticket_id = "stats#all", item = "totals"`: the all-time aggregates
//!   (tickets per status, closed count, summed resolution time, a histogram of
//!   resolution times), updated in the transaction of every ticket change, so
//!   the metrics never read the whole history.
//! - A closed ticket carries `closed_day` / `closed_at` / `closed_by`: the
//!   `by-closed` index (one partition per UTC day) serves the 24 h and 7 d windows.

use super::{Note, Ticket, TicketStatus};
use crate::dynamo::{Item, StoreError, get_n, get_s, n, s};
use crate::tasks::{TaskId, TicketId};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde_json::{Value, json};

fn ticket_item(t: &Ticket) -> Item {
    let mut item = Item::from([
        ("ticket_id".into(), s(t.ticket_id.as_str())),
        ("item".into(), s("ticket")),
        ("task_id".into(), s(&t.task_id.to_string())),
        ("status".into(), s(t.status.as_str())),
        ("created_at".into(), n(t.created_at)),
        ("updated_at".into(), n(t.updated_at)),
        ("version".into(), n(t.version as i64)),
        (
            "sources".into(),
            s(&serde_json::to_string(&t.sources).unwrap_or_default()),
        ),
        (
            "escalation_payload".into(),
            s(&t.escalation_payload.to_string()),
        ),
    ]);
    if let Some(a) = &t.assigned_to {
        item.insert("assigned_to".into(), s(a));
    }
    if let Some(summary) = &t.summary {
        item.insert("summary".into(), s(summary));
    }
    item
}

fn ticket_from(item: &Item) -> Result<Ticket, StoreError> {
    let bad = |what: &str| StoreError::Internal(format!("ticket item has no valid {what}"));
    Ok(Ticket {
        ticket_id: TicketId::from_raw(get_s(item, "ticket_id").ok_or_else(|| bad("ticket_id"))?),
        task_id: get_s(item, "task_id")
            .and_then(|raw| TaskId::parse(&raw))
            .ok_or_else(|| bad("task_id"))?,
        status: get_s(item, "status")
            .and_then(|v| TicketStatus::parse(&v))
            .ok_or_else(|| bad("status"))?,
        summary: get_s(item, "summary"),
        created_at: get_n(item, "created_at").ok_or_else(|| bad("created_at"))?,
        updated_at: get_n(item, "updated_at").unwrap_or_default(),
        assigned_to: get_s(item, "assigned_to"),
        sources: get_s(item, "sources")
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default(),
        escalation_payload: get_s(item, "escalation_payload")
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default(),
        version: get_n(item, "version").unwrap_or_default().max(0) as u64,
    })
}

fn history_item(ticket_id: &str, version: u64, entry: &Value) -> Item {
    Item::from([
        ("ticket_id".into(), s(ticket_id)),
        ("item".into(), s(&format!("history#{version:06}"))),
        ("entry".into(), s(&entry.to_string())),
    ])
}

fn marker_key(task_id: TaskId) -> Item {
    Item::from([
        ("ticket_id".into(), s(&format!("task#{task_id}"))),
        ("item".into(), s("open")),
    ])
}

/// The key of the all-time aggregates item.
fn totals_key() -> Item {
    Item::from([
        ("ticket_id".into(), s("stats#all")),
        ("item".into(), s("totals")),
    ])
}

/// Upper edges (minutes) of the resolution-time histogram kept in the aggregates;
/// one more bucket holds everything above the last edge.
pub const RESOLUTION_BUCKETS_MINUTES: [u32; 10] = [5, 15, 30, 60, 120, 240, 480, 1440, 2880, 10080];

/// The aggregates attribute counting tickets in `status`.
pub fn count_attribute(status: TicketStatus) -> String {
    format!("count_{}", status.as_str())
}

/// The histogram bucket attribute for a resolution time.
pub fn bucket_attribute(resolution_ms: i64) -> String {
    let minutes = resolution_ms as f64 / 60_000.0;
    RESOLUTION_BUCKETS_MINUTES
        .iter()
        .find(|edge| minutes <= f64::from(**edge))
        .map_or("resolution_le_inf".to_string(), |edge| {
            format!("resolution_le_{edge}")
        })
}

/// The UTC day (`2026-11-25`) of an epoch-millisecond time: the `by-closed` partition.
pub fn day_of(millis: i64) -> String {
    crate::time::rfc3339(millis)[..10].to_string()
}

/// The aggregates update of a transition (`from: None` when a ticket opens).
fn totals_update(
    table: &str,
    from: Option<TicketStatus>,
    to: TicketStatus,
    resolution_ms: Option<i64>,
) -> Result<Update, aws_sdk_dynamodb::error::BuildError> {
    let mut adds = vec![("#to", count_attribute(to), ":one")];
    if let Some(from) = from {
        adds.push(("#from", count_attribute(from), ":minus_one"));
    }
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(totals_key()))
        .expression_attribute_values(":one", n(1));
    if from.is_some() {
        update = update.expression_attribute_values(":minus_one", n(-1));
    }
    if let Some(ms) = resolution_ms {
        adds.push(("#closed", "closed_count".into(), ":one"));
        adds.push(("#sum", "resolution_ms_sum".into(), ":ms"));
        adds.push(("#bucket", bucket_attribute(ms), ":one"));
        update = update.expression_attribute_values(":ms", n(ms.max(0)));
    }
    let expression = adds
        .iter()
        .map(|(name, _, value)| format!("{name} {value}"))
        .collect::<Vec<_>>()
        .join(", ");
    for (name, attribute, _) in &adds {
        update = update.expression_attribute_names(*name, attribute);
    }
    update
        .update_expression(format!("ADD {expression}"))
        .build()
}

/// The most notes one ticket holds; a ticket is a case file, not a chat.
pub const MAX_NOTES_PER_TICKET: usize = 200;

/// Why a note was not added.
#[derive(Debug, Clone, PartialEq)]
pub enum NoteRefused {
    NotFound,
    /// Resolved and dismissed tickets are read-only.
    Closed(TicketStatus),
    /// The ticket already holds [`MAX_NOTES_PER_TICKET`] notes.
    Full,
}

/// What opening a ticket did.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    Opened(Box<Ticket>),
    /// The task already has an open ticket (possibly this very one, on a replay).
    AlreadyOpen(TicketId),
}

/// What a change does to the ticket's assignee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee<'a> {
    Keep,
    Set(&'a str),
    Clear,
}

/// A change a reviewer asks for.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub to: TicketStatus,
    pub assign: Assignee<'a>,
    pub summary: Option<&'a str>,
    pub actor: &'a str,
    /// Extra facts for the history entry (the outcome of a resolution).
    pub detail: Value,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    NotFound,
    /// The transition is not allowed from the ticket's current status (or another change won the race).
    Conflict(TicketStatus),
}

#[derive(Clone)]
pub struct ReviewStore {
    client: Client,
    table: String,
}

impl ReviewStore {
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.into(),
        }
    }

    pub fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &crate::config::Settings,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::new(sdk, settings.required("REVIEWS_TABLE")?))
    }

    /// Opens a ticket unless its task already has an open one. Replaying the
    /// same ticket (same id) is harmless.
    pub async fn open(&self, ticket: &Ticket) -> Result<Opened, StoreError> {
        let mut marker = marker_key(ticket.task_id);
        marker.insert("open_ticket".into(), s(ticket.ticket_id.as_str()));
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
        let opened = json!({"action": "opened", "status": "open", "at": ticket.created_at, "by": "system", "sources": ticket.sources});
        let put = |item: Item, condition: Option<&str>| -> Result<TransactWriteItem, StoreError> {
            Ok(TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .set_condition_expression(condition.map(String::from))
                        .build()
                        .map_err(build)?,
                )
                .build())
        };
        let tx = self
            .client
            .transact_write_items()
            .transact_items(put(
                ticket_item(ticket),
                Some("attribute_not_exists(ticket_id)"),
            )?)
            .transact_items(put(
                marker.clone(),
                Some("attribute_not_exists(ticket_id)"),
            )?)
            .transact_items(put(
                history_item(ticket.ticket_id.as_str(), ticket.version, &opened),
                None,
            )?)
            .transact_items(
                TransactWriteItem::builder()
                    .update(
                        totals_update(&self.table, None, TicketStatus::Open, None)
                            .map_err(build)?,
                    )
                    .build(),
            );
        let result = crate::dynamo::send_transaction(tx, None).await;
        match result {
            Ok(_) => Ok(Opened::Opened(Box::new(ticket.clone()))),
            Err(err)
                if crate::dynamo::Cancelled::of(&err).is_some_and(|c| c.any_condition_failed()) =>
            {
                let marker = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(marker_key(ticket.task_id)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                let open = marker
                    .item()
                    .and_then(|i| get_s(i, "open_ticket"))
                    .map_or_else(|| ticket.ticket_id.clone(), TicketId::from_raw);
                Ok(Opened::AlreadyOpen(open))
            }
            Err(err) => Err(StoreError::from_transaction(err)),
        }
    }

    pub async fn get(&self, ticket_id: &str) -> Result<Option<Ticket>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("ticket_id", s(ticket_id))
            .key("item", s("ticket"))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        out.item().map(ticket_from).transpose()
    }

    /// Applies a change if the ticket is still where the reviewer saw it: the
    /// transition must be allowed and the version unchanged, else `Conflict`.
    pub async fn change(
        &self,
        ticket_id: &str,
        change: &Change<'_>,
        now: i64,
    ) -> Result<Result<Ticket, Refused>, StoreError> {
        let Some(current) = self.get(ticket_id).await? else {
            return Ok(Err(Refused::NotFound));
        };
        if !current.status.may_become(change.to) {
            return Ok(Err(Refused::Conflict(current.status)));
        }
        let mut next = current.clone();
        next.status = change.to;
        next.version += 1;
        next.updated_at = now;
        match change.assign {
            Assignee::Keep => {}
            Assignee::Set(who) => next.assigned_to = Some(who.to_string()),
            Assignee::Clear => next.assigned_to = None,
        }
        if let Some(summary) = change.summary {
            next.summary = Some(summary.to_string());
        }
        let mut update = "SET #status = :to, version = :next, updated_at = :now".to_string();
        let mut values = vec![
            (":to", s(change.to.as_str())),
            (":next", n(next.version as i64)),
            (":now", n(now)),
            (":seen", n(current.version as i64)),
        ];
        match &next.assigned_to {
            Some(a) => {
                update.push_str(", assigned_to = :who");
                values.push((":who", s(a)));
            }
            None => update.push_str(" REMOVE assigned_to"),
        }
        if let Some(summary) = &next.summary {
            update = update.replacen(
                ", updated_at = :now",
                ", updated_at = :now, summary = :summary",
                1,
            );
            values.push((":summary", s(summary)));
        }
        // A closed ticket joins the `by-closed` index under its day.
        let resolution_ms = change.to.is_closed().then(|| now - current.created_at);
        if resolution_ms.is_some() {
            update = update.replacen(
                ", updated_at = :now",
                ", updated_at = :now, closed_at = :now, closed_day = :day, closed_by = :actor",
                1,
            );
            values.push((":day", s(&day_of(now))));
            values.push((":actor", s(change.actor)));
        }
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
        let mut ticket_update = Update::builder()
            .table_name(&self.table)
            .key("ticket_id", s(ticket_id))
            .key("item", s("ticket"))
            .update_expression(update)
            .condition_expression("version = :seen")
            .expression_attribute_names("#status", "status");
        for (k, v) in values {
            ticket_update = ticket_update.expression_attribute_values(k, v);
        }
        let entry = json!({
            "action": change.to.as_str(), "status": change.to.as_str(), "from": current.status.as_str(),
            "by": change.actor, "at": now, "assigned_to": next.assigned_to, "summary": change.summary, "detail": change.detail,
        });
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .update(ticket_update.build().map_err(build)?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(history_item(ticket_id, next.version, &entry)))
                            .condition_expression("attribute_not_exists(ticket_id)")
                            .build()
                            .map_err(build)?,
                    )
                    .build(),
            );
        if change.to.is_closed() {
            tx = tx.transact_items(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(marker_key(current.task_id)))
                            .build()
                            .map_err(build)?,
                    )
                    .build(),
            );
        }
        tx = tx.transact_items(
            TransactWriteItem::builder()
                .update(
                    totals_update(&self.table, Some(current.status), change.to, resolution_ms)
                        .map_err(build)?,
                )
                .build(),
        );
        let result = crate::dynamo::send_transaction(tx, None).await;
        match result {
            Ok(_) => Ok(Ok(next)),
            Err(err)
                if crate::dynamo::Cancelled::of(&err).is_some_and(|c| c.any_condition_failed()) =>
            {
                // Someone else changed it first: report where it is now.
                let now_status = self
                    .get(ticket_id)
                    .await?
                    .map_or(current.status, |t| t.status);
                Ok(Err(Refused::Conflict(now_status)))
            }
            Err(err) => Err(StoreError::from_transaction(err)),
        }
    }

    /// Adds a note to an open or in-review ticket: one transaction counts it on the
    /// ticket (at most [`MAX_NOTES_PER_TICKET`]) and writes the note item, so a closed
    /// ticket stays read-only and no ticket collects notes without bound.
    pub async fn add_note(
        &self,
        ticket_id: &str,
        author: &str,
        content: &str,
        now: i64,
    ) -> Result<Result<Note, NoteRefused>, StoreError> {
        let note = Note {
            note_id: uuid::Uuid::new_v4().to_string(),
            author: author.to_string(),
            content: content.to_string(),
            created_at: crate::time::rfc3339(now),
        };
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
        let count = Update::builder()
            .table_name(&self.table)
            .key("ticket_id", s(ticket_id))
            .key("item", s("ticket"))
            .update_expression("ADD note_count :one")
            .condition_expression(
                "#status IN (:open, :in_review) AND (attribute_not_exists(note_count) OR note_count < :max)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":open", s(TicketStatus::Open.as_str()))
            .expression_attribute_values(":in_review", s(TicketStatus::InReview.as_str()))
            .expression_attribute_values(":max", n(MAX_NOTES_PER_TICKET as i64))
            .build()
            .map_err(build)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Item::from([
                ("ticket_id".into(), s(ticket_id)),
                (
                    "item".into(),
                    s(&format!("note#{now:015}#{}", note.note_id)),
                ),
                (
                    "note".into(),
                    s(&serde_json::to_string(&note).unwrap_or_default()),
                ),
            ])))
            .build()
            .map_err(build)?;
        let tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(count).build())
            .transact_items(TransactWriteItem::builder().put(put).build());
        match crate::dynamo::send_transaction(tx, None).await {
            Ok(_) => Ok(Ok(note)),
            Err(err)
                if crate::dynamo::Cancelled::of(&err).is_some_and(|c| c.condition_failed(0)) =>
            {
                Ok(Err(match self.get(ticket_id).await? {
                    None => NoteRefused::NotFound,
                    Some(t) if t.status.is_closed() => NoteRefused::Closed(t.status),
                    Some(_) => NoteRefused::Full,
                }))
            }
            Err(err) => Err(StoreError::from_transaction(err)),
        }
    }

    /// Every item a query matches, page after page.
    async fn query_all(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn items_with_prefix(
        &self,
        ticket_id: &str,
        prefix: &str,
        field: &str,
    ) -> Result<Vec<String>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("ticket_id = :t AND begins_with(#item, :p)")
            .expression_attribute_names("#item", "item")
            .expression_attribute_values(":t", s(ticket_id))
            .expression_attribute_values(":p", s(prefix))
            .consistent_read(true);
        Ok(self
            .query_all(query)
            .await?
            .iter()
            .filter_map(|i| get_s(i, field))
            .collect())
    }

    /// A ticket's notes, oldest first.
    pub async fn notes(&self, ticket_id: &str) -> Result<Vec<Note>, StoreError> {
        Ok(self
            .items_with_prefix(ticket_id, "note#", "note")
            .await?
            .iter()
            .filter_map(|n| serde_json::from_str(n).ok())
            .collect())
    }

    /// A ticket's history, oldest first.
    pub async fn history(&self, ticket_id: &str) -> Result<Vec<Value>, StoreError> {
        Ok(self
            .items_with_prefix(ticket_id, "history#", "entry")
            .await?
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect())
    }

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

/// The all-time aggregates of the reviews table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tickets per status, in [`TicketStatus::ALL`] order.
    pub by_status: [u64; 4],
    pub closed: u64,
    pub resolution_ms_sum: u64,
    /// Closed tickets per [`RESOLUTION_BUCKETS_MINUTES`] bucket (not cumulative), then the overflow.
    pub resolution_buckets: [u64; RESOLUTION_BUCKETS_MINUTES.len() + 1],
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
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(totals_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let Some(item) = out.item() else {
            return Ok(Totals::default());
        };
        let count = |k: &str| get_n(item, k).unwrap_or_default().max(0) as u64;
        let mut totals = Totals {
            closed: count("closed_count"),
            resolution_ms_sum: count("resolution_ms_sum"),
            ..Totals::default()
        };
        for (i, status) in TicketStatus::ALL.iter().enumerate() {
            totals.by_status[i] = count(&count_attribute(*status));
        }
        for (i, edge) in RESOLUTION_BUCKETS_MINUTES.iter().enumerate() {
            totals.resolution_buckets[i] = count(&format!("resolution_le_{edge}"));
        }
        totals.resolution_buckets[RESOLUTION_BUCKETS_MINUTES.len()] = count("resolution_le_inf");
        Ok(totals)
    }

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

/// Where each source of a listing stands: the index key to continue after
/// (values written `S:…` or `N:…`), or `None` once exhausted. Absent: not started.
pub type ListCursor =
    std::collections::BTreeMap<String, Option<std::collections::BTreeMap<String, String>>>;

fn key_to_cursor(item: &Item, attrs: &[&str]) -> std::collections::BTreeMap<String, String> {
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

fn cursor_to_key(key: &std::collections::BTreeMap<String, String>) -> Item {
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
    ) -> Result<(Vec<Ticket>, Option<ListCursor>), StoreError> {
        let limit = query.limit.clamp(1, 100);
        let statuses = if query.statuses.is_empty() {
            TicketStatus::ALL.to_vec()
        } else {
            query.statuses.clone()
        };
        // One source per status, or the assignee's index (filtered by status when asked).
        let sources: Vec<(String, &str, &str, String)> = match &query.assignee {
            Some(who) => vec![("assignee".into(), "by-assignee", "assigned_to", who.clone())],
            None => statuses
                .iter()
                .map(|st| {
                    (
                        st.as_str().to_string(),
                        "by-status",
                        "status",
                        st.as_str().to_string(),
                    )
                })
                .collect(),
        };
        let mut next = cursor.clone();
        // (source, ticket, item) of every fetched candidate, and each source's page end.
        let mut candidates: Vec<(usize, Ticket, Item)> = Vec::new();
        let mut page_ends: Vec<Option<Option<Item>>> = vec![None; sources.len()];
        for (i, (name, index, key_attr, key_value)) in sources.iter().enumerate() {
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
            page_ends[i] = Some(page.last_evaluated_key().cloned());
        }
        candidates.sort_by(|a, b| {
            a.1.created_at
                .cmp(&b.1.created_at)
                .then(a.1.ticket_id.cmp(&b.1.ticket_id))
        });
        let fetched_per_source = |i: usize| candidates.iter().filter(|c| c.0 == i).count();
        let counts: Vec<usize> = (0..sources.len()).map(fetched_per_source).collect();
        let taken: Vec<(usize, Ticket, Item)> = candidates.into_iter().take(limit).collect();
        for (i, (name, _, key_attr, _)) in sources.iter().enumerate() {
            let Some(page_end) = &page_ends[i] else {
                continue;
            };
            let taken_here: Vec<&(usize, Ticket, Item)> =
                taken.iter().filter(|t| t.0 == i).collect();
            if taken_here.len() == counts[i] {
                // Everything fetched from it was used: continue where DynamoDB stopped, or it is done.
                next.insert(
                    name.clone(),
                    page_end
                        .as_ref()
                        .map(|k| key_to_cursor(k, &["ticket_id", "item", "created_at", key_attr])),
                );
            } else if let Some(last) = taken_here.last() {
                next.insert(
                    name.clone(),
                    Some(key_to_cursor(
                        &last.2,
                        &["ticket_id", "item", "created_at", key_attr],
                    )),
                );
            }
        }
        let more = sources
            .iter()
            .any(|(name, ..)| next.get(name).is_none_or(Option::is_some));
        Ok((
            taken.into_iter().map(|t| t.1).collect(),
            more.then_some(next),
        ))
    }
}
