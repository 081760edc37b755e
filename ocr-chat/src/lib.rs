//! `ocr-chat`: grounded question answering over a recognised document (built by the chat issue; the crate exists so the workspace has its final shape and dependency arrows).
