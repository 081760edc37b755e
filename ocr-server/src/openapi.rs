//! `/openapi.json`: the OpenAPI 3.1 description of the API, built in code from the same
//! constants the handlers use (formats, tools, limits, the job schema), so it cannot drift
//! from what the server accepts. Nothing is fetched at build or run time.

use ocr_formats::Format;
use serde_json::{Value, json};

use crate::config::Config;

/// The job object's JSON Schema, the one the JSON export is tested against.
const JOB_SCHEMA: &str = include_str!("../../ocr-formats/schema/job.schema.json");

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn job(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
    })
}

pub fn document(config: &Config) -> Value {
    let mut job_schema: Value = serde_json::from_str(JOB_SCHEMA).unwrap_or(json!({}));
    // Components may not carry their own $id/$schema; $defs move to components.
    let defs = job_schema
        .as_object_mut()
        .and_then(|o| {
            o.remove("$schema");
            o.remove("$id");
            o.remove("$defs")
        })
        .unwrap_or(json!({}));
    let job_text = serde_json::to_string(&job_schema)
        .unwrap_or_default()
        .replace("#/$defs/", "#/components/schemas/");
    let job_schema: Value = serde_json::from_str(&job_text).unwrap_or(json!({}));
    let mut schemas = serde_json::Map::new();
    if let Some(defs) = defs.as_object() {
        for (name, schema) in defs {
            let text = serde_json::to_string(schema)
                .unwrap_or_default()
                .replace("#/$defs/", "#/components/schemas/");
            schemas.insert(
                name.clone(),
                serde_json::from_str(&text).unwrap_or(json!({})),
            );
        }
    }
    schemas.insert("Job".into(), job_schema);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "used": {"type": "integer", "description": "402: credits used in the period"},
                "cap": {"type": "integer", "description": "402: the period's allowance"}
            }
        }),
    );
    schemas.insert(
        "Citation".into(),
        json!({
            "type": "object",
            "required": ["page", "snippet"],
            "properties": {
                "page": {"type": "integer", "minimum": 1},
                "snippet": {"type": "string", "description": "A literal substring of that page's text."},
                "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                         "description": "The box around the page lines the snippet spans, in page pixels."}
            }
        }),
    );
    schemas.insert(
        "ChatMessage".into(),
        json!({
            "type": "object",
            "required": ["role", "content", "citations"],
            "properties": {
                "role": {"enum": ["user", "assistant"]},
                "content": {"type": "string"},
                "citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}},
                "created_at": {"type": "string", "format": "date-time"}
            }
        }),
    );
    schemas.insert(
        "ChatReply".into(),
        json!({
            "type": "object",
            "required": ["conversation", "message"],
            "properties": {
                "conversation": {"type": "string"},
                "answerer": {"type": "string", "description": "qwen2.5-1.5b, qwen2.5-0.5b or extractive"},
                "message": {"$ref": "#/components/schemas/ChatMessage"}
            }
        }),
    );
    let formats: Vec<&str> = Format::ALL.iter().map(|f| f.extension()).collect();
    let security = json!([{}, {"bearer": []}, {"api_token": []}]);
    let uuid_param = json!({
        "name": "uuid", "in": "path", "required": true,
        "schema": {"type": "string", "format": "uuid"}
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "OCR.chat-compatible API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted OCR: images and PDFs to text, Markdown, JSON with word boxes, and exports."
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "api_token": {"type": "apiKey", "in": "query", "name": "api_token"}
            },
            "schemas": schemas
        },
        "security": security,
        "paths": {
            "/api/v1/ocr/": {"post": {
                "operationId": "submit",
                "summary": format!(
                    "Submit a file. Files of at most {} pages are read inside the request (200); \
                     larger ones are queued (202) and polled.", config.inline_pages),
                "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": format!("PNG, JPEG, WEBP, GIF, BMP, TIFF or PDF; at most {} bytes", config.max_upload_bytes)},
                        "tier": {"enum": ["cpu", "vlm"], "default": "cpu"},
                        "language": {"type": "string", "default": "auto"},
                        "tool": {"enum": ["extract-tables", "handwriting-to-text", "translate"]},
                        "translate_to": {"type": "string"}
                    }
                }}}},
                "responses": {
                    "200": job("The finished job (small files)."),
                    "202": job("The job, pending in the queue."),
                    "400": error("No file, unsupported or corrupt file, over a limit, unknown tier, language or tool, or a tier or tool this server does not offer."),
                    "401": error("A token that is unknown, revoked or malformed."),
                    "402": error("Not enough pages left in the caller's allowance."),
                    "503": error("The queue is full or the server is busy (see Retry-After).")
                }
            }},
            "/api/v1/ocr/{uuid}/": {"get": {
                "operationId": "status",
                "parameters": [uuid_param.clone()],
                "responses": {
                    "200": job("The job."),
                    "401": error("Bad token."),
                    "404": error("Unknown job, or another account's.")
                }
            }},
            "/api/v1/ocr/{uuid}/download/": {"get": {
                "operationId": "download",
                "parameters": [uuid_param.clone(), {
                    "name": "format", "in": "query", "required": false,
                    "schema": {"enum": formats, "default": "json"}
                }, {
                    "name": "translated", "in": "query", "required": false,
                    "description": "The translation of a job submitted with tool=translate (txt, md, docx or json).",
                    "schema": {"type": "boolean", "default": false}
                }],
                "responses": {
                    "200": {"description": "The export, as an attachment.",
                            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "400": error("Unknown format, or a translation asked of a job without one."),
                    "401": error("Bad token."),
                    "404": error("Unknown job, or another account's."),
                    "409": error("The job is not finished, or failed without a result.")
                }
            }},
            "/api/v1/chat/{uuid}/": {"post": {
                "operationId": "chat",
                "parameters": [uuid_param.clone()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["message"],
                    "properties": {"message": {"type": "string"}}
                }}}},
                "responses": {
                    "200": {"description": "The answer, grounded in the job's text. With `Accept: text/event-stream`: Server-Sent Events, `delta` ({text}) as the answer is written, then `message` with this same object (or `error`).",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ChatReply"}},
                                "text/event-stream": {"schema": {"type": "string"}}
                            }},
                    "400": error("Empty, missing or too long message."),
                    "401": error("No account token."),
                    "404": error("Unknown job, or another account's."),
                    "409": error("The job is not finished."),
                    "503": error("Too many questions waiting (see Retry-After).")
                }
            }},
            "/api/v1/chat/{uuid}/history/": {"get": {
                "operationId": "chatHistory",
                "parameters": [uuid_param],
                "responses": {
                    "200": {"description": "The account's conversation about the job, oldest turn first.",
                            "content": {"application/json": {"schema": {
                                "type": "object", "required": ["conversation", "messages"],
                                "properties": {
                                    "conversation": {"type": "string"},
                                    "messages": {"type": "array", "items": {"$ref": "#/components/schemas/ChatMessage"}}
                                }
                            }}}},
                    "401": error("No account token."),
                    "404": error("Unknown job, or another account's."),
                    "409": error("The job is not finished.")
                }
            }},
            "/healthz": {"get": {"operationId": "health", "security": [{}], "responses": {
                "200": {"description": "The server and its database work."},
                "503": {"description": "The database does not answer, or the server is stopping."}
            }}},
            "/metrics": {"get": {"operationId": "metrics", "security": [{}], "responses": {
                "200": {"description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}
            }}}
        }
    })
}
