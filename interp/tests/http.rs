//! The OpenAI-compatible client: the request it sends, retries with back-off on 429/5xx, immediate failure on
//! other errors, bounded concurrency and the answer cache. A loopback HTTP/1.1 server scripted per test plays
//! the endpoint (the failures a real server gives only under load must be produced on demand). Against a real
//! server: set SPARSECODER_CHAT_SERVER (base URL, e.g. http://127.0.0.1:8080/v1) and SPARSECODER_CHAT_MODEL.
use interp::chat::{Answer, CachedChat, ChatMessage, ChatModel, HttpChat, ResponseFormat};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Each request's headers and JSON body, as the scripted server saw them.
type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// Serves one scripted (status, body) per connection, recording each request's headers and JSON body.
fn serve(script: Vec<(u16, String)>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (status, body) in script {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut buf = vec![0u8; len];
            reader.read_exact(&mut buf).unwrap();
            log.lock()
                .unwrap()
                .push((head, serde_json::from_slice(&buf).unwrap()));
            let mut s = stream;
            let reason = if status == 200 { "OK" } else { "Error" };
            write!(
                s,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    (url, seen)
}

fn answer(text: &str) -> String {
    serde_json::json!({"choices": [{"message": {"role": "assistant", "content": text}}]})
        .to_string()
}

fn client(url: &str, retries: u32, concurrency: usize) -> HttpChat {
    HttpChat::new(
        url,
        "test-model",
        "SPARSECODER_TEST_KEY",
        0.0,
        7,
        Duration::from_secs(10),
        retries,
        concurrency,
    )
}

#[test]
fn retries_overload_then_answers() {
    std::env::set_var("SPARSECODER_TEST_KEY", "secret");
    let (url, seen) = serve(vec![
        (503, "busy".into()),
        (429, "slow down".into()),
        (200, answer("[1, 0]")),
    ]);
    let chat = client(&url, 3, 1);
    let messages = vec![ChatMessage::new("user", "hello")];
    let t = std::time::Instant::now();
    assert_eq!(
        chat.complete(&messages, Answer::Text { max_tokens: 33 })
            .unwrap()
            .text,
        "[1, 0]"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "back-off of 0.5 s then 1 s"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let (head, body) = &seen[2];
    assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer secret"),
        "{head}"
    );
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["max_tokens"], 33);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["messages"][0]["content"], "hello");
}

#[test]
fn client_errors_fail_at_once_and_say_why() {
    let (url, seen) = serve(vec![(400, "{\"error\": \"bad model\"}".into())]);
    let err = client(&url, 3, 1)
        .complete(
            &[ChatMessage::new("user", "x")],
            Answer::Text { max_tokens: 5 },
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 400") && err.contains("bad model"),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "no retry on a 400");
    let (url, _) = serve(vec![(200, "{\"nothing\": 1}".into())]);
    let err = client(&url, 0, 1)
        .complete(
            &[ChatMessage::new("user", "x")],
            Answer::Text { max_tokens: 5 },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("no choices[0].message.content"), "{err}");
    let err = client("http://127.0.0.1:9/v1", 1, 1)
        .complete(
            &[ChatMessage::new("user", "x")],
            Answer::Text { max_tokens: 5 },
        )
        .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}

#[test]
fn concurrent_prompts_are_answered_in_order_and_cached() {
    let n = 8;
    let (url, seen) = serve((0..n).map(|_| (200, answer("ok"))).collect());
    let chat = client(&url, 0, 4);
    let tmp = tempfile::tempdir().unwrap();
    let prompts: Vec<(Vec<ChatMessage>, Answer)> = (0..n)
        .map(|i| {
            let m = vec![ChatMessage::new("user", format!("prompt {i}"))];
            (m, Answer::BinaryList { n: 3 })
        })
        .collect();
    let cached = CachedChat::new(&chat, tmp.path().to_path_buf());
    let answers = cached.complete_all(&prompts, &|| {});
    assert!(answers.iter().all(|a| a.as_ref().unwrap().text == "ok"));
    let mut asked: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b["messages"][0]["content"].as_str().unwrap().to_string())
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        (0..n).map(|i| format!("prompt {i}")).collect::<Vec<_>>()
    );
    // Everything is on disk now: a second run asks nothing (the server would refuse: its script is over).
    let again = CachedChat::new(&chat, tmp.path().to_path_buf());
    assert!(again
        .complete_all(&prompts, &|| {})
        .iter()
        .all(|a| a.as_ref().unwrap().text == "ok"));
    assert_eq!(again.hits.load(std::sync::atomic::Ordering::Relaxed), n);
    // Another kind of answer is another question (the server is asked again).
    let (url, seen) = serve(vec![(200, answer("longer"))]);
    let other = client(&url, 0, 1);
    let c = CachedChat::new(&other, tmp.path().to_path_buf());
    assert_eq!(
        c.complete(&prompts[0].0, Answer::Text { max_tokens: 11 })
            .unwrap()
            .text,
        "longer"
    );
    assert_eq!(seen.lock().unwrap()[0].1["max_tokens"], 11);
}

#[test]
fn list_answers_can_ask_for_a_schema() {
    let (url, seen) = serve(vec![(200, answer("{\"answers\": [1, 0, 1]}")); 2]);
    let q = [ChatMessage::new("user", "which?")];
    for (format, kind) in [
        (ResponseFormat::JsonSchema, "json_schema"),
        (ResponseFormat::JsonObject, "json_object"),
    ] {
        let mut chat = client(&url, 0, 1);
        chat.response_format = format;
        let a = chat.complete(&q, Answer::BinaryList { n: 3 }).unwrap();
        assert_eq!(a.yes_probability, None, "a server gives no probabilities");
        let a = a.text;
        assert_eq!(
            interp::prompts::parse_binary_list(&a, 3),
            Some(vec![true, false, true])
        );
        let body = seen.lock().unwrap().last().unwrap().1.clone();
        let rf = &body["response_format"];
        assert_eq!(rf["type"], kind);
        let schema = if kind == "json_schema" {
            &rf["json_schema"]["schema"]
        } else {
            &rf["schema"]
        };
        assert_eq!(schema["properties"]["answers"]["minItems"], 3);
        assert_eq!(schema["properties"]["answers"]["maxItems"], 3);
    }
}

#[test]
fn a_real_server_answers() {
    let (Ok(url), Ok(model)) = (
        std::env::var("SPARSECODER_CHAT_SERVER"),
        std::env::var("SPARSECODER_CHAT_MODEL"),
    ) else {
        eprintln!("a_real_server_answers: skipped: SPARSECODER_CHAT_SERVER / SPARSECODER_CHAT_MODEL not set");
        return;
    };
    let chat = HttpChat::new(
        &url,
        &model,
        "OPENAI_API_KEY",
        0.0,
        0,
        Duration::from_secs(120),
        2,
        2,
    );
    let q = [ChatMessage::new("user", "What is the capital of France?")];
    let a = chat
        .complete(&q, Answer::Text { max_tokens: 20 })
        .unwrap()
        .text;
    eprintln!("{url} ({model}): {a:?}");
    assert!(a.contains("Paris"), "{a}");
}

/// Simulation's digit lists: `logprobs` asked for; with a server's log-probabilities each entry is its expected
/// digit (hand-computed below), without them the digits written.
#[test]
fn digit_lists_use_the_servers_logprobs_when_given() {
    let entry = |token: &str, tops: &[(&str, f64)]| {
        serde_json::json!({
            "token": token,
            "logprob": tops[0].1.ln(),
            "top_logprobs": tops.iter().map(|(t, p)| serde_json::json!({"token": t, "logprob": p.ln()}))
                .collect::<Vec<_>>(),
        })
    };
    // The answer "[0, 7]" as tokens: `[`, `0`, `,`, ` 7`, `]`; the two entries' top alternatives include a
    // non-digit, which is left out and the digits renormalised.
    let content = vec![
        entry("[", &[("[", 1.0)]),
        entry("0", &[("0", 0.6), ("2", 0.2), ("x", 0.2)]),
        entry(",", &[(",", 1.0)]),
        entry(" 7", &[(" 7", 0.5), ("9", 0.25), (" 1", 0.25)]),
        entry("]", &[("]", 1.0)]),
    ];
    let with =
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": "[0, 7]"},
                                                "logprobs": {"content": content}}]})
        .to_string();
    let (url, seen) = serve(vec![(200, with), (200, answer("[0, 7]"))]);
    let chat = client(&url, 0, 1);
    let q = [ChatMessage::new("user", "predict")];
    let a = chat.complete(&q, Answer::DigitList { n: 2 }).unwrap();
    // (0·0.6 + 2·0.2) / 0.8 = 0.5; (7·0.5 + 9·0.25 + 1·0.25) / 1.0 = 6.0.
    let e = a.expected_digits.clone().unwrap();
    assert!(
        (e[0] - 0.5).abs() < 1e-12 && (e[1] - 6.0).abs() < 1e-12,
        "{e:?}"
    );
    assert_eq!(interp::simulation::predictions(&a, 2), Some((e, true)));
    let body = seen.lock().unwrap()[0].1.clone();
    assert_eq!(
        (body["logprobs"].clone(), body["top_logprobs"].clone()),
        (true.into(), 10.into())
    );
    let plain = chat.complete(&q, Answer::DigitList { n: 2 }).unwrap();
    assert_eq!(plain.expected_digits, None, "no logprobs in the answer");
    assert_eq!(
        interp::simulation::predictions(&plain, 2),
        Some((vec![0.0, 7.0], false))
    );
}
