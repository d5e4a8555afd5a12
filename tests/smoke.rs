mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[actix_web::test]
async fn signup_login_contact_round_trip() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let c = app
        .create_contact(&t, json!({"first_name": "Ada", "email": "ada@example.com"}))
        .await;
    let id = c["id"].as_str().unwrap();
    let res = app
        .as_tenant(&t, Method::GET, &format!("/v1/contacts/{id}"))
        .send()
        .await
        .unwrap();
    let got = expect(res, StatusCode::OK).await;
    assert_eq!(got["email"], "ada@example.com");
}
