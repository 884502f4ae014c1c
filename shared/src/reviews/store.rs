//! Tickets in DynamoDB (reviews table, key `ticket_id` + `item`).
//!
//! - `item = "ticket"`: the ticket; the `by-status` and `by-assignee` indexes
//!   (keyed by `created_at`) serve the queue oldest first, never by a scan
//!   (`listing.rs`).
//! - `item = "note#…"`, `"history#0001"…`: notes and the change history, one
//!   item each, so no ticket item grows without bound.
//! - `ticket_id = "task#<task_id>", item = "open"`: the marker that keeps one
//!   open ticket per task; written when a ticket opens, deleted when it closes,
//!   in the same transaction.
//! - `ticket_id = "stats#<shard>", item = "totals"`: the all-time aggregates
//!   (`totals.rs`), spread over shards by ticket id, updated in the transaction
//!   of every ticket change.
//! - A closed ticket carries `closed_day` / `closed_at` / `closed_by`: the
//!   `by-closed` index (one partition per UTC day) serves the 24 h and 7 d windows.

use super::changes::{CHANGES_INDEX, ChangeKind, TicketChange};
use super::totals::{Totals, all_totals_keys, day_of, totals_update};
use super::{Note, Ticket, TicketStatus};
use crate::dynamo::{Item, StoreError, UpdateExpression, get_n, get_s, n, s};
use crate::tasks::{TaskId, TicketId};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Delete, KeysAndAttributes, Put, TransactWriteItem, Update};
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

pub(super) fn ticket_from(item: &Item) -> Result<Ticket, StoreError> {
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
        note_count: get_n(item, "note_count")
            .unwrap_or_default()
            .clamp(0, i64::from(u32::MAX)) as u32,
    })
}

fn history_key(version: u64) -> String {
    format!("history#{version:06}")
}

/// A history entry; `change` puts it in the `changes` index (the review event stream).
fn history_item(ticket_id: &str, version: u64, entry: &Value, change: &TicketChange) -> Item {
    let mut item = Item::from([
        ("ticket_id".into(), s(ticket_id)),
        ("item".into(), s(&history_key(version))),
        ("entry".into(), s(&entry.to_string())),
    ]);
    change.index_attributes(&mut item);
    item
}

fn marker_key(task_id: TaskId) -> Item {
    Item::from([
        ("ticket_id".into(), s(&format!("task#{task_id}"))),
        ("item".into(), s("open")),
    ])
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
    pub(super) client: Client,
    pub(super) table: String,
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
        let opened = json!({
            "action": "opened", "status": "open", "at": ticket.created_at, "by": "system",
            "sources": ticket.sources,
        });
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
                history_item(
                    ticket.ticket_id.as_str(),
                    ticket.version,
                    &opened,
                    &TicketChange::new(
                        ChangeKind::Opened,
                        ticket.ticket_id.as_str(),
                        &history_key(ticket.version),
                        Some(ticket.task_id),
                        Some(TicketStatus::Open),
                        None,
                        "system",
                        ticket.created_at,
                    ),
                ),
                None,
            )?)
            .transact_items(
                TransactWriteItem::builder()
                    .update(
                        totals_update(
                            &self.table,
                            &ticket.ticket_id,
                            None,
                            TicketStatus::Open,
                            None,
                        )
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
        let mut update = UpdateExpression::new()
            .set("status", s(change.to.as_str()))
            .set("version", n(next.version as i64))
            .set("updated_at", n(now))
            .condition_value(":seen", n(current.version as i64));
        update = match &next.assigned_to {
            Some(who) => update.set("assigned_to", s(who)),
            None => update.remove("assigned_to"),
        };
        if let Some(summary) = &next.summary {
            update = update.set("summary", s(summary));
        }
        // A closed ticket joins the `by-closed` index under its day.
        let resolution_ms = change.to.is_closed().then(|| now - current.created_at);
        if resolution_ms.is_some() {
            update = update
                .set("closed_at", n(now))
                .set("closed_day", s(&day_of(now)))
                .set("closed_by", s(change.actor));
        }
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
        let ticket_update = update.apply(
            Update::builder()
                .table_name(&self.table)
                .key("ticket_id", s(ticket_id))
                .key("item", s("ticket"))
                .condition_expression("#version = :seen"),
        );
        let entry = json!({
            "action": change.to.as_str(), "status": change.to.as_str(), "from": current.status.as_str(),
            "by": change.actor, "at": now, "assigned_to": next.assigned_to,
            "summary": change.summary, "detail": change.detail,
        });
        let recorded = TicketChange::new(
            ChangeKind::of_transition(change.to),
            ticket_id,
            &history_key(next.version),
            Some(current.task_id),
            Some(change.to),
            next.assigned_to.as_deref(),
            change.actor,
            now,
        );
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
                            .set_item(Some(history_item(
                                ticket_id,
                                next.version,
                                &entry,
                                &recorded,
                            )))
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
                    totals_update(
                        &self.table,
                        &current.ticket_id,
                        Some(current.status),
                        change.to,
                        resolution_ms,
                    )
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
        let key = format!("note#{now:015}#{}", note.note_id);
        let mut item = Item::from([
            ("ticket_id".into(), s(ticket_id)),
            ("item".into(), s(&key)),
            (
                "note".into(),
                s(&serde_json::to_string(&note).unwrap_or_default()),
            ),
        ]);
        TicketChange::new(
            ChangeKind::NoteAdded,
            ticket_id,
            &key,
            None,
            None,
            None,
            author,
            now,
        )
        .index_attributes(&mut item);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
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
    pub(super) async fn query_all(
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

    /// A query of one ticket's items whose key starts with `prefix` (notes, history).
    fn prefix_query(
        &self,
        ticket_id: &str,
        prefix: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("ticket_id = :t AND begins_with(#item, :p)")
            .expression_attribute_names("#item", "item")
            .expression_attribute_values(":t", s(ticket_id))
            .expression_attribute_values(":p", s(prefix))
    }

    async fn items_with_prefix(
        &self,
        ticket_id: &str,
        prefix: &str,
        field: &str,
    ) -> Result<Vec<String>, StoreError> {
        let query = self.prefix_query(ticket_id, prefix).consistent_read(true);
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

    /// A ticket's newest notes, newest first, at most `limit` (one query).
    pub async fn newest_notes(
        &self,
        ticket_id: &str,
        limit: usize,
    ) -> Result<Vec<Note>, StoreError> {
        let page = self
            .prefix_query(ticket_id, "note#")
            .scan_index_forward(false)
            .limit(limit.clamp(1, 100) as i32)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(page
            .items()
            .iter()
            .filter_map(|i| get_s(i, "note"))
            .filter_map(|n| serde_json::from_str(&n).ok())
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
}

impl ReviewStore {
    /// The all-time aggregates: every shard in one strongly consistent batch read, summed.
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        let mut keys = KeysAndAttributes::builder()
            .set_keys(Some(all_totals_keys()))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut items = Vec::new();
        // A batch may come back in part (throttling): ask again for what is left.
        for _ in 0..10 {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            items.extend(
                out.responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            match out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                Some(left) if !left.keys().is_empty() => keys = left.clone(),
                _ => return Ok(Totals::sum_of(&items)),
            }
        }
        Err(StoreError::Unavailable(
            "the aggregates could not be read in full".into(),
        ))
    }
}

impl ReviewStore {
    /// The changes of `day` with keys after `after`, oldest first (eventually consistent).
    pub async fn changes_after(
        &self,
        day: &str,
        after: &str,
        limit: i32,
    ) -> Result<Vec<TicketChange>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CHANGES_INDEX)
            .key_condition_expression("change_day = :day AND change_key > :after")
            .expression_attribute_values(":day", s(day))
            .expression_attribute_values(":after", s(after))
            .limit(limit)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| crate::dynamo::get_s(i, "change"))
            .filter_map(|c| serde_json::from_str(&c).ok())
            .collect())
    }
}
