//! Chat-template API behaviour that needs no external assets: loading and selecting templates from a model
//! directory (the transformers rules), special tokens, typed messages, kwargs, error reporting with template
//! lines, and the resource limits (fuel, output cap, input depth).

use std::path::PathBuf;

use serde_json::json;
use tern_text::template::{
    ChatMessage, ChatTemplate, DateTime, FunctionCall, FunctionDefinition, RenderLimits, RenderRequest, TemplateError,
    Tool, ToolCall,
};

/// A fresh, empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-template-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn user(text: &str) -> serde_json::Value {
    json!({"role": "user", "content": text})
}

#[test]
fn named_templates_from_tokenizer_config_are_selected_like_transformers() {
    let dir = temp_dir("named");
    let config = json!({
        "bos_token": {"__type": "AddedToken", "content": "<s>", "special": true},
        "eos_token": "</s>",
        "pad_token": null,
        "chat_template": [
            {"name": "default", "template": "D{{ bos_token }}{{ messages[0].content }}"},
            {"name": "tool_use", "template": "T{{ tools|length }}{{ eos_token }}"},
            {"name": "rag", "template": "R{{ documents|length }}"}
        ]
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).expect("write");
    let t = ChatTemplate::from_model_dir(&dir).expect("loads").expect("has templates");
    assert_eq!(t.names().collect::<Vec<_>>(), ["default", "tool_use", "rag"]);
    assert_eq!(t.special_token("bos_token"), Some("<s>"));
    assert_eq!(t.special_token("eos_token"), Some("</s>"));
    assert_eq!(t.special_token("pad_token"), None);

    let req = RenderRequest::new(vec![user("hi")]);
    assert_eq!(t.render(&req).expect("default"), "D<s>hi");
    // Tools select tool_use.
    let with_tools = req.clone().with_tools(vec![json!({"type": "function"})]);
    let r = t.render_detailed(&with_tools).expect("tool_use");
    assert_eq!((r.text.as_str(), r.template_name.as_str()), ("T1</s>", "tool_use"));
    // An explicit name wins.
    let mut rag = req.clone();
    rag.template_name = Some("rag".into());
    rag.documents = Some(vec![json!({"title": "a", "text": "b"})]);
    assert_eq!(t.render(&rag).expect("rag"), "R1");
    // Unknown names are errors that list what exists.
    let mut bad = req.clone();
    bad.template_name = Some("nope".into());
    match t.render(&bad) {
        Err(TemplateError::NoSuchTemplate { name, available }) => {
            assert_eq!(name, "nope");
            assert_eq!(available, ["default", "tool_use", "rag"]);
        }
        other => panic!("expected NoSuchTemplate, got {other:?}"),
    }
    // Without a `default`, a request without a name fails.
    let t = ChatTemplate::from_named(vec![("a".into(), "A".into()), ("b".into(), "B".into())]);
    assert!(matches!(t.render(&req), Err(TemplateError::NoSuchTemplate { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jinja_files_take_precedence_over_tokenizer_config() {
    let dir = temp_dir("files");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"chat_template": "from config", "eos_token": "</s>"}).to_string(),
    )
    .expect("write");
    // No jinja file yet: the config template.
    let t = ChatTemplate::from_model_dir(&dir).expect("loads").expect("template");
    assert_eq!(t.render(&RenderRequest::new(vec![])).expect("renders"), "from config");

    std::fs::write(dir.join("chat_template.jinja"), "from file {{ eos_token }}\n").expect("write");
    std::fs::create_dir_all(dir.join("additional_chat_templates")).expect("mkdir");
    std::fs::write(dir.join("additional_chat_templates/tool_use.jinja"), "tools!").expect("write");
    let t = ChatTemplate::from_model_dir(&dir).expect("loads").expect("template");
    assert_eq!(t.names().collect::<Vec<_>>(), ["default", "tool_use"]);
    // Jinja strips a single trailing newline (keep_trailing_newline=False).
    assert_eq!(t.render(&RenderRequest::new(vec![])).expect("renders"), "from file </s>");
    let tools = RenderRequest::new(vec![]).with_tools(vec![]);
    assert_eq!(t.render(&tools).expect("renders"), "tools!");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn model_dir_without_template_and_malformed_configs() {
    let dir = temp_dir("none");
    assert!(ChatTemplate::from_model_dir(&dir).expect("ok").is_none());
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"eos_token": "</s>"}"#).expect("write");
    assert!(ChatTemplate::from_model_dir(&dir).expect("ok").is_none());
    // Legacy processor file.
    std::fs::write(dir.join("chat_template.json"), r#"{"chat_template": "legacy"}"#).expect("write");
    let t = ChatTemplate::from_model_dir(&dir).expect("ok").expect("legacy template");
    assert_eq!(t.render(&RenderRequest::new(vec![])).expect("renders"), "legacy");

    for (text, needle) in [
        ("{not json", "tokenizer_config.json"),
        (r#"{"chat_template": 5}"#, "field 'chat_template'"),
        (r#"{"chat_template": [{"name": "x"}]}"#, "chat_template'[0]"),
        (r#"{"chat_template": "x", "bos_token": 3}"#, "field 'bos_token'"),
        (r#"{"chat_template": "x", "chat_control_tokens": "a"}"#, "chat_control_tokens"),
        ("[]", "top level"),
    ] {
        std::fs::write(dir.join("tokenizer_config.json"), text).expect("write");
        match ChatTemplate::from_model_dir(&dir) {
            Err(e @ TemplateError::Config { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
            }
            other => panic!("{text}: expected a config error, got {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_quote_the_failing_template_line() {
    let source = "{% for m in messages %}\n{{ m.content }}\n{{ m.content + 1 }}\n{% endfor %}";
    let t = ChatTemplate::new(source).expect("parses");
    let err = t.render(&RenderRequest::new(vec![user("x")])).expect_err("type error");
    let loc = err.location().expect("has a location");
    assert_eq!((loc.line, loc.text.as_str()), (3, "{{ m.content + 1 }}"));
    assert!(err.to_string().contains("line 3: `{{ m.content + 1 }}`"), "{err}");

    // Syntax errors: eager for a single template...
    match ChatTemplate::new("ok\n{% if %}\n") {
        Err(TemplateError::Syntax { location: Some(loc), .. }) => {
            assert_eq!((loc.line, loc.text.as_str()), (2, "{% if %}"));
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    // ...deferred for named templates, so a broken variant does not disable the others.
    let t = ChatTemplate::from_named(vec![("default".into(), "fine".into()), ("tool_use".into(), "{% for %}".into())]);
    assert_eq!(t.render(&RenderRequest::new(vec![])).expect("default"), "fine");
    let tools = RenderRequest::new(vec![]).with_tools(vec![]);
    assert!(matches!(t.render(&tools), Err(TemplateError::Syntax { .. })));

    // raise_exception keeps its message and line.
    let t = ChatTemplate::new(
        "a\n{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}",
    )
    .expect("parses");
    match t.render(&RenderRequest::new(vec![json!({"role": "system", "content": "s"})])) {
        Err(TemplateError::Raised { message, location: Some(loc) }) => {
            assert_eq!(message, "System role not supported");
            assert_eq!(loc.line, 2);
        }
        other => panic!("expected Raised, got {other:?}"),
    }
}

#[test]
fn fuel_and_output_caps_stop_runaway_templates() {
    let small = RenderLimits {
        base_fuel: 10_000,
        fuel_per_input_byte: 0,
        base_output_bytes: 1000,
        output_bytes_per_input_byte: 0,
    };
    let spin = ChatTemplate::new("{% for i in range(100000) %}{% set x = i * 2 %}{% endfor %}")
        .expect("parses")
        .with_limits(small);
    match spin.render(&RenderRequest::new(vec![])) {
        Err(TemplateError::OutOfFuel { fuel, location: Some(loc) }) => {
            assert_eq!(fuel, 10_000);
            assert_eq!(loc.line, 1);
        }
        other => panic!("expected OutOfFuel, got {other:?}"),
    }
    // Memory: a huge string is refused before it is allocated.
    let big = ChatTemplate::new("{{ 'a' * 100000000000 }}").expect("parses");
    assert!(matches!(big.render(&RenderRequest::new(vec![])), Err(TemplateError::OutOfFuel { .. })));
    let chatty = ChatTemplate::new("{% for i in range(500) %}xxxxxxxxxx{% endfor %}")
        .expect("parses")
        .with_limits(RenderLimits { base_fuel: 1_000_000, ..small });
    assert!(matches!(
        chatty.render(&RenderRequest::new(vec![])),
        Err(TemplateError::OutputTooLarge { limit: 1000, .. })
    ));
    // The limits scale with the input: the same template fits once the input is large enough.
    let echo = ChatTemplate::new("{% for m in messages %}{{ m.content }}{% endfor %}")
        .expect("parses")
        .with_limits(RenderLimits { base_fuel: 1_000_000, output_bytes_per_input_byte: 2, ..small });
    let long = "y".repeat(5000);
    assert_eq!(echo.render(&RenderRequest::new(vec![user(&long)])).expect("fits"), long);
    // Recursion is bounded without overflowing the stack.
    let rec = ChatTemplate::new("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").expect("parses");
    assert!(rec.render(&RenderRequest::new(vec![])).is_err());
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(20000), ")".repeat(20000));
    assert!(matches!(ChatTemplate::new(&deep), Err(TemplateError::Syntax { .. })));
}

#[test]
fn invalid_inputs_are_rejected() {
    let t = ChatTemplate::new("{{ messages|length }}").expect("parses");
    let err = t.render(&RenderRequest::new(vec![json!("just a string")])).expect_err("not an object");
    assert!(matches!(err, TemplateError::InvalidInput { .. }));
    assert!(err.to_string().contains("message 0 is not a JSON object"), "{err}");

    let mut nested = json!("leaf");
    for _ in 0..200 {
        nested = json!([nested]);
    }
    let err = t.render(&RenderRequest::new(vec![json!({"role": "user", "content": nested})])).expect_err("too deep");
    assert!(err.to_string().contains("nested deeper than 128"), "{err}");

    let reserved = RenderRequest::new(vec![]).with_kwarg("messages", json!([]));
    assert!(matches!(t.render(&reserved), Err(TemplateError::InvalidInput { .. })));
}

#[test]
fn template_variables_and_kwargs() {
    let t = ChatTemplate::new(
        "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ enable_thinking }}|\
         {{ tools }}|{{ documents }}|{{ strftime_now('%d %b %Y') }}",
    )
    .expect("parses")
    .with_special_token("bos_token", "<s>")
    .with_special_token("eos_token", "</s>");
    let req = RenderRequest::new(vec![])
        .with_generation_prompt(true)
        .with_kwarg("enable_thinking", json!(false))
        .with_kwarg("eos_token", json!("<|eot|>"))
        .with_now(DateTime::new(2024, 7, 26, 9, 30, 15).expect("date"));
    // kwargs override special tokens of the same name, as in apply_chat_template.
    assert_eq!(t.render(&req).expect("renders"), "<s>|<|eot|>|True|False|None|None|26 Jul 2024");
    // Without an injected time the clock is used.
    let year =
        t.render(&RenderRequest::new(vec![])).expect("renders").rsplit(' ').next().map(str::to_string).expect("year");
    assert!(year.parse::<i32>().is_ok_and(|y| y >= 2024), "{year}");
}

#[test]
fn typed_messages_render_like_json() {
    let source = "{% for m in messages %}{{ m.role }}:{{ m.content }}\
        {% for c in m.tool_calls or [] %}[{{ c.function.name }}({{ c.function.arguments|tojson }}) {{ c.id }}]{% endfor %}\
        {% if m.tool_call_id %}<{{ m.tool_call_id }}>{% endif %}{% if m.reasoning_content %}({{ m.thinking }}){% endif %}\n\
        {% endfor %}{{ tools|tojson }}";
    let t = ChatTemplate::new(source).expect("parses");
    let mut assistant = ChatMessage::new("assistant", "");
    assistant.reasoning_content = Some("hmm".into());
    assistant.tool_calls = Some(vec![ToolCall {
        id: Some("call1".into()),
        kind: "function".into(),
        function: FunctionCall { name: "get_weather".into(), arguments: json!({"city": "Paris"}) },
    }]);
    let mut tool_msg = ChatMessage::new("tool", "22C");
    tool_msg.tool_call_id = Some("call1".into());
    let messages = vec![ChatMessage::new("user", "weather?"), assistant, tool_msg];
    let tools = vec![Tool {
        kind: "function".into(),
        function: FunctionDefinition {
            name: "get_weather".into(),
            description: Some("Weather".into()),
            parameters: Some(json!({"type": "object"})),
            extra: Default::default(),
        },
    }];
    let typed = RenderRequest::from_messages(&messages).with_typed_tools(&tools);
    let json_req = RenderRequest::new(vec![
        json!({"role": "user", "content": "weather?"}),
        json!({"role": "assistant", "content": "", "reasoning_content": "hmm",
               "tool_calls": [{"id": "call1", "type": "function",
                               "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}),
        json!({"role": "tool", "content": "22C", "tool_call_id": "call1"}),
    ])
    .with_tools(vec![json!({"type": "function", "function": {"name": "get_weather",
        "description": "Weather", "parameters": {"type": "object"}}})]);
    let a = t.render(&typed).expect("typed");
    assert_eq!(a, t.render(&json_req).expect("json"));
    assert_eq!(
        a,
        // (trim_blocks eats the newline after each `{% endif %}`)
        "user:weather?assistant:[get_weather({\"city\": \"Paris\"}) call1](hmm)tool:22C<call1>\
         [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather\", \
         \"parameters\": {\"type\": \"object\"}}}]"
    );

    // Opt-in normalizations.
    let mut req = RenderRequest::new(vec![
        json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
        json!({"role": "assistant", "content": "", "tool_calls": [{"type": "function",
            "function": {"name": "f", "arguments": "{\"x\": 1}"}}]}),
    ]);
    let t = ChatTemplate::new("{{ messages[0].content }}|{{ messages[1].tool_calls[0].function.arguments.x }}")
        .expect("parses");
    assert_eq!(t.render(&req).expect("as given"), "[{'type': 'text', 'text': 'a'}, {'type': 'text', 'text': 'b'}]|");
    req.flatten_text_content = true;
    req.parse_tool_call_arguments = true;
    assert_eq!(t.render(&req).expect("normalized"), "a\nb|1");
}

#[test]
fn chat_template_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChatTemplate>();
    let t = std::sync::Arc::new(ChatTemplate::new("{{ messages[0].content }}").expect("parses"));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let t = t.clone();
            std::thread::spawn(move || t.render(&RenderRequest::new(vec![user(&i.to_string())])))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().expect("thread").expect("renders"), i.to_string());
    }
}
