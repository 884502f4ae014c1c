//! `infra/dev deploy-console` against moto's CloudFormation, S3 and CloudFront: it reads the
//! stack's outputs, writes the console's `config.json` from them, uploads the assets (cached for
//! a year) and then the entry points (no-cache), and invalidates the entry points.

use neuraforge_tests::{aws_env, python, workspace_root};
use std::process::Command;

/// Runs Python with boto3 against the test's moto; the script's last line is JSON.
fn boto(script: &str) -> serde_json::Value {
    let out = aws_env(Command::new(python()).args(["-c", script]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap()
}

fn deploy(args: &[&str]) -> std::process::Output {
    aws_env(
        Command::new(python())
            .arg(workspace_root().join("infra/deploy_console.py"))
            .args(args),
    )
    .output()
    .unwrap()
}

#[test]
fn deploy_console_uploads_the_build_with_its_configuration_and_invalidates_the_entry_points() {
    let name = format!("nf-console-{}", std::process::id());
    // A stack with the outputs template.yaml declares (moto's CloudFormation makes the bucket;
    // the distribution is made beside it, as moto's CloudFormation has none).
    let made = boto(&format!(
        r#"
import boto3, json
cf = boto3.client("cloudfront")
dist = cf.create_distribution(DistributionConfig={{
    "CallerReference": "{name}", "Comment": "", "Enabled": True,
    "Origins": {{"Quantity": 1, "Items": [{{"Id": "o", "DomainName": "b.s3.amazonaws.com",
        "S3OriginConfig": {{"OriginAccessIdentity": ""}}}}]}},
    "DefaultCacheBehavior": {{"TargetOriginId": "o", "ViewerProtocolPolicy": "redirect-to-https"}},
}})["Distribution"]
template = {{
    "Resources": {{"ConsoleBucket": {{"Type": "AWS::S3::Bucket"}}}},
    "Outputs": {{
        "ConsoleBucketName": {{"Value": {{"Ref": "ConsoleBucket"}}}},
        "ConsoleDistributionId": {{"Value": dist["Id"]}},
        "ConsoleUrl": {{"Value": "https://" + dist["DomainName"] + "/"}},
        "ApiUrl": {{"Value": "https://abc123.execute-api.us-east-1.amazonaws.com/live"}},
        "JwtIssuer": {{"Value": "https://id.example.com"}},
    }},
}}
boto3.client("cloudformation").create_stack(StackName="{name}", TemplateBody=json.dumps(template))
print(json.dumps({{"distribution": dist["Id"]}}))
"#
    ));
    let distribution = made["distribution"].as_str().unwrap().to_string();

    // A build: index.html and a hashed asset.
    let dist = std::env::temp_dir().join(format!("{name}-dist"));
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><script src=\"/assets/index-abc.js\"></script>",
    )
    .unwrap();
    std::fs::write(dist.join("assets/index-abc.js"), "console.log(1)").unwrap();

    let out = deploy(&[
        "--stack",
        &name,
        "--dist",
        dist.to_str().unwrap(),
        "--client-id",
        "neuraforge-console",
        "--param",
        "resource=urn:neuraforge:api",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("uploaded 3 files"));

    let seen = boto(&format!(
        r#"
import boto3, json
cf = boto3.client("cloudformation")
outputs = {{o["OutputKey"]: o["OutputValue"] for o in cf.describe_stacks(StackName="{name}")["Stacks"][0]["Outputs"]}}
s3 = boto3.client("s3")
bucket = outputs["ConsoleBucketName"]
def head(key):
    h = s3.head_object(Bucket=bucket, Key=key)
    return {{"type": h["ContentType"], "cache": h.get("CacheControl")}}
config = json.loads(s3.get_object(Bucket=bucket, Key="config.json")["Body"].read())
invalidations = boto3.client("cloudfront").list_invalidations(DistributionId="{distribution}")["InvalidationList"]
print(json.dumps({{"index": head("index.html"), "asset": head("assets/index-abc.js"),
    "config_head": head("config.json"), "config": config,
    "invalidations": invalidations.get("Quantity", 0)}}))
"#
    ));
    assert_eq!(seen["index"]["type"], "text/html");
    assert_eq!(seen["index"]["cache"], "no-cache");
    assert_eq!(seen["config_head"]["cache"], "no-cache");
    assert_eq!(seen["asset"]["type"], "text/javascript");
    assert_eq!(
        seen["asset"]["cache"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        seen["config"],
        serde_json::json!({
            "api_base": "https://abc123.execute-api.us-east-1.amazonaws.com/live",
            "oidc": {
                "authority": "https://id.example.com",
                "client_id": "neuraforge-console",
                "scope": "openid",
                "extra_query_params": {"resource": "urn:neuraforge:api"}
            }
        })
    );
    assert_eq!(seen["invalidations"], 1);

    // Bad input: one line, exit 1, nothing uploaded.
    let missing = deploy(&["--stack", "no-such-stack", "--dist", dist.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.starts_with("deploy-console: stack no-such-stack"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    let unbuilt = deploy(&["--stack", &name, "--dist", "/nonexistent"]);
    assert_eq!(unbuilt.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unbuilt.stderr).contains("build the console first"));
    let bad_param = deploy(&[
        "--stack",
        &name,
        "--dist",
        dist.to_str().unwrap(),
        "--param",
        "novalue",
    ]);
    assert!(String::from_utf8_lossy(&bad_param.stderr).contains("--param takes KEY=VALUE"));
    std::fs::remove_dir_all(&dist).unwrap();
}
