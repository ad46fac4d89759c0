//! The version a refusal suggests is free in the ledger: with real pushes through
//! tagwarden, a refused push of other bytes to a release names the next patch after
//! every release of its series already bound, and a prerelease the next free number.

use crate::support;

use support::skopeo::push;

use support::{Image, Stack};

#[tokio::test]
async fn a_refusal_suggests_a_version_no_tag_of_the_series_is_bound_to() {
    let stack = Stack::start().await;
    let web = |tag: &str| stack.front.docker_ref(&format!("driftwood/web:{tag}"));
    let [a, b, c, d] = [0; 4].map(|_| Image::random(&[512]));

    push(&a, &web("1.4.0")).await.assert_success();
    let alone = push(&b, &web("1.4.0")).await.assert_failure();
    assert!(
        alone.contains("publish a new version such as 1.4.1 instead"),
        "{alone}"
    );
    push(&b, &web("1.4.1")).await.assert_success();
    let stderr = push(&c, &web("1.4.0")).await.assert_failure();
    assert!(
        stderr.contains("publish a new version such as 1.4.2 instead"),
        "1.4.1 is bound: {stderr}"
    );

    push(&a, &web("v2.4.1-rc.1")).await.assert_success();
    push(&b, &web("v2.4.1-rc.2")).await.assert_success();
    let stderr = push(&c, &web("v2.4.1-rc.1")).await.assert_failure();
    assert!(
        stderr.contains("publish a new version such as v2.4.1-rc.3 instead"),
        "{stderr}"
    );

    // A release the registry had before tagwarden saw it: adopted, then refused, and
    // the suggestion still skips what the ledger holds.
    push(&d, &stack.registry.docker_ref("driftwood/web:1.5.0"))
        .await
        .assert_success();
    push(&a, &web("1.5.1")).await.assert_success();
    let stderr = push(&c, &web("1.5.0")).await.assert_failure();
    assert!(stderr.contains(d.digest()), "{stderr}");
    assert!(
        stderr.contains("publish a new version such as 1.5.2 instead"),
        "{stderr}"
    );
}
