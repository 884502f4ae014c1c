//! Creates the template's tables and queues in the emulator, and works out each
//! function's environment and event sources from the same template.

use crate::template::{
    ACCOUNT, EventSource, Physical, REGION, Resolver, Template, Unresolvable, events,
};
use anyhow::{Context, Result, anyhow};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A function of the stack, as the local tools need it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalFunction {
    pub logical_id: String,
    /// The binary (and `cargo lambda watch` function name).
    pub binary: String,
    pub environment: BTreeMap<String, String>,
    /// Variables the template fills from secrets: the local environment file must provide them.
    pub secret_variables: Vec<String>,
    pub events: Vec<EventSource>,
}

/// A queue of the stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalQueue {
    pub name: String,
    pub url: String,
    pub arn: String,
}

/// Everything created for one stack (one prefix) in the emulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalStack {
    pub stack_name: String,
    pub tables: BTreeMap<String, String>,
    pub queues: BTreeMap<String, LocalQueue>,
    /// S3 buckets by logical id.
    #[serde(default)]
    pub buckets: BTreeMap<String, String>,
    pub functions: BTreeMap<String, LocalFunction>,
}

impl LocalStack {
    pub fn function(&self, binary: &str) -> Result<&LocalFunction> {
        self.functions
            .values()
            .find(|f| f.binary == binary)
            .ok_or_else(|| anyhow!("no function {binary} in the template"))
    }

    /// The union of every function's environment (one `cargo lambda watch` serves them all).
    pub fn merged_environment(&self) -> BTreeMap<String, String> {
        self.functions
            .values()
            .flat_map(|f| f.environment.clone())
            .collect()
    }

    pub fn secret_variables(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .functions
            .values()
            .flat_map(|f| f.secret_variables.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn attribute_type(raw: &str) -> ScalarAttributeType {
    ScalarAttributeType::from(raw)
}

fn key_schema(value: &Value) -> Result<Vec<KeySchemaElement>> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
                .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or_default()))
                .build()
                .context("bad KeySchema")
        })
        .collect()
}

async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str, p: &Value) -> Result<()> {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&p["KeySchema"])?));
    for a in p["AttributeDefinitions"].as_array().into_iter().flatten() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a["AttributeName"].as_str().unwrap_or_default())
                .attribute_type(attribute_type(
                    a["AttributeType"].as_str().unwrap_or_default(),
                ))
                .build()?,
        );
    }
    for index in p["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
        let projection = &index["Projection"];
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index["IndexName"].as_str().unwrap_or_default())
                .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            projection["ProjectionType"].as_str().unwrap_or("ALL"),
                        ))
                        .set_non_key_attributes(projection["NonKeyAttributes"].as_array().map(
                            |a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .map(String::from)
                                    .collect()
                            },
                        ))
                        .build(),
                )
                .build()?,
        );
    }
    if let Some(view) = p["StreamSpecification"]["StreamViewType"].as_str() {
        request = request.stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::from(view))
                .build()?,
        );
    }
    request
        .send()
        .await
        .with_context(|| format!("creating table {name}"))?;
    if let Some(ttl) = p["TimeToLiveSpecification"].as_object() {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl["AttributeName"].as_str().unwrap_or_default())
                    .enabled(ttl["Enabled"].as_bool().unwrap_or(true))
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("enabling TTL on {name}"))?;
    }
    Ok(())
}

/// Queue properties the emulator understands, as SQS attributes.
const QUEUE_ATTRIBUTES: &[(&str, QueueAttributeName)] = &[
    ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
    (
        "MessageRetentionPeriod",
        QueueAttributeName::MessageRetentionPeriod,
    ),
    (
        "ReceiveMessageWaitTimeSeconds",
        QueueAttributeName::ReceiveMessageWaitTimeSeconds,
    ),
    ("DelaySeconds", QueueAttributeName::DelaySeconds),
    ("MaximumMessageSize", QueueAttributeName::MaximumMessageSize),
];

/// Creates every table and queue of the template under `stack_name`, then works
/// out the functions. Queues without a redrive policy (dead-letter queues) come first.
pub async fn provision(
    sdk: &aws_config::SdkConfig,
    template: &Template,
    stack_name: &str,
) -> Result<LocalStack> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut physical: BTreeMap<String, Physical> = BTreeMap::new();
    let mut stack = LocalStack {
        stack_name: stack_name.to_string(),
        tables: BTreeMap::new(),
        queues: BTreeMap::new(),
        buckets: BTreeMap::new(),
        functions: BTreeMap::new(),
    };

    for (logical, table) in template.of_kind("AWS::DynamoDB::Table") {
        let name = format!("{stack_name}-{logical}");
        create_table(&dynamodb, &name, &table.properties).await?;
        physical.insert(
            logical.clone(),
            Physical {
                reference: name.clone(),
                attributes: BTreeMap::from([(
                    "Arn".to_string(),
                    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"),
                )]),
            },
        );
        stack.tables.insert(logical.clone(), name);
    }

    let mut queues: Vec<_> = template.of_kind("AWS::SQS::Queue").collect();
    queues.sort_by_key(|(_, q)| !q.properties["RedrivePolicy"].is_null());
    for (logical, queue) in queues {
        let name = format!("{stack_name}-{logical}");
        let resolver = Resolver {
            template,
            stack_name,
            physical: &physical,
        };
        let mut request = sqs.create_queue().queue_name(&name);
        for (property, attribute) in QUEUE_ATTRIBUTES {
            if !queue.properties[*property].is_null() {
                let value = resolver
                    .resolve_string(&queue.properties[*property])
                    .map_err(|e| anyhow!("{logical}.{property}: {e}"))?;
                request = request.attributes(attribute.clone(), value);
            }
        }
        if !queue.properties["RedrivePolicy"].is_null() {
            let policy = resolver
                .resolve(&queue.properties["RedrivePolicy"])
                .map_err(|e| anyhow!("{logical}.RedrivePolicy: {e}"))?;
            let max: u64 = match &policy["maxReceiveCount"] {
                Value::String(s) => s.parse()?,
                other => other
                    .as_u64()
                    .ok_or_else(|| anyhow!("bad maxReceiveCount"))?,
            };
            let redrive = serde_json::json!({"deadLetterTargetArn": policy["deadLetterTargetArn"], "maxReceiveCount": max});
            request = request.attributes(QueueAttributeName::RedrivePolicy, redrive.to_string());
        }
        let url = request
            .send()
            .await
            .with_context(|| format!("creating queue {name}"))?
            .queue_url()
            .unwrap_or_default()
            .to_string();
        let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}");
        physical.insert(
            logical.clone(),
            Physical {
                reference: url.clone(),
                attributes: BTreeMap::from([
                    ("Arn".to_string(), arn.clone()),
                    ("QueueUrl".to_string(), url.clone()),
                    ("QueueName".to_string(), name.clone()),
                ]),
            },
        );
        stack
            .queues
            .insert(logical.clone(), LocalQueue { name, url, arn });
    }

    // Buckets (S3 names are lower case), with Object Lock where the template asks for it.
    let s3 = shared::aws::s3(sdk);
    for (logical, bucket) in template.of_kind("AWS::S3::Bucket") {
        let name = format!("{stack_name}-{logical}").to_lowercase();
        let locked = bucket.properties["ObjectLockEnabled"].as_bool() == Some(true);
        s3.create_bucket()
            .bucket(&name)
            .object_lock_enabled_for_bucket(locked)
            .send()
            .await
            .with_context(|| format!("creating bucket {name}"))?;
        physical.insert(
            logical.clone(),
            Physical {
                reference: name.clone(),
                attributes: BTreeMap::from([("Arn".to_string(), format!("arn:aws:s3:::{name}"))]),
            },
        );
        stack.buckets.insert(logical.clone(), name);
    }

    // Plain SSM parameters (`Ref` gives their name), created with their initial value.
    let ssm = aws_sdk_ssm::Client::new(sdk);
    for (logical, parameter) in template.of_kind("AWS::SSM::Parameter") {
        let name = format!("{stack_name}-{logical}");
        ssm.put_parameter()
            .name(&name)
            .value(parameter.properties["Value"].as_str().unwrap_or_default())
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .with_context(|| format!("creating SSM parameter {name}"))?;
        physical.insert(
            logical.clone(),
            Physical {
                reference: name,
                attributes: BTreeMap::new(),
            },
        );
    }

    let resolver = Resolver {
        template,
        stack_name,
        physical: &physical,
    };
    for (logical, function) in template.of_kind("AWS::Serverless::Function") {
        let binary = function.metadata["BuildProperties"]["Binary"]
            .as_str()
            .ok_or_else(|| anyhow!("{logical}: Metadata.BuildProperties.Binary is missing"))?
            .to_string();
        let mut environment = BTreeMap::new();
        let mut secret_variables = Vec::new();
        let globals = &template.function_globals["Environment"]["Variables"];
        let own = &function.properties["Environment"]["Variables"];
        for (name, value) in globals
            .as_object()
            .into_iter()
            .flatten()
            .chain(own.as_object().into_iter().flatten())
        {
            match resolver.resolve_string(value) {
                Ok(v) => {
                    environment.insert(name.clone(), v);
                }
                Err(Unresolvable::DynamicReference) => secret_variables.push(name.clone()),
                // Made of something only AWS has (the console's CloudFront domain): unset here.
                Err(Unresolvable::NotLocal(_)) => {}
                Err(e) => return Err(anyhow!("{logical} environment {name}: {e}")),
            }
        }
        stack.functions.insert(
            logical.clone(),
            LocalFunction {
                logical_id: logical.clone(),
                binary,
                environment,
                secret_variables,
                events: events(function)?
                    .into_iter()
                    .chain(crate::template::mappings_of(template, logical)?)
                    .collect(),
            },
        );
    }
    Ok(stack)
}

/// Stores a secret where the functions read it at cold start: the SSM SecureString
/// parameter the template names (`AUTH__JWT_SECRET_PARAMETER`, `AUDIT__SIGNING_KEY_PARAMETER`,
/// `AGENTS__OPENAI_API_KEY_PARAMETER`).
pub async fn store_signing_secret(
    sdk: &aws_config::SdkConfig,
    parameter: &str,
    secret: &str,
) -> Result<()> {
    aws_sdk_ssm::Client::new(sdk)
        .put_parameter()
        .name(parameter)
        .value(secret)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .with_context(|| format!("storing the signing secret in SSM parameter {parameter}"))?;
    Ok(())
}
