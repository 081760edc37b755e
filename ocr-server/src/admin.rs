//! The operator's commands: `ocr accounts`, `ocr tokens`, `ocr credits`, `ocr usage`. They open
//! the same database the server uses (safe while it runs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use crate::auth;
use crate::clock;
use crate::config::Config;
use crate::db::Db;

/// Where the database is: the same options `ocr serve` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Place {
    /// Data folder (default ./ocr-data).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Configuration file (TOML).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AccountsArgs {
    #[command(flatten)]
    place: Place,
    #[command(subcommand)]
    command: AccountsCommand,
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Create an account and its first token (shown once).
    Create {
        #[arg(long, value_parser = ["free", "paid"], default_value = "free")]
        plan: String,
        /// Purchased credits to start with (paid accounts spend them).
        #[arg(long, default_value_t = 0)]
        credits: u64,
    },
    /// List accounts.
    List,
    /// Change an account's plan.
    SetPlan {
        account: String,
        #[arg(value_parser = ["free", "paid"])]
        plan: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct TokensArgs {
    #[command(flatten)]
    place: Place,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token for an account (shown once).
    Create {
        #[arg(long)]
        account: String,
    },
    /// Revoke a token by its id (tok_…).
    Revoke { token_id: String },
    /// List an account's tokens (ids only: secrets are never stored).
    List {
        #[arg(long)]
        account: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreditsArgs {
    #[command(flatten)]
    place: Place,
    #[command(subcommand)]
    command: CreditsCommand,
}

#[derive(Debug, Subcommand)]
enum CreditsCommand {
    /// Add purchased credits to an account.
    Add {
        #[arg(long)]
        account: String,
        credits: u64,
    },
}

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    #[command(flatten)]
    place: Place,
    /// One account's usage.
    #[arg(long, conflicts_with = "ip")]
    account: Option<String>,
    /// One anonymous client address's usage.
    #[arg(long)]
    ip: Option<String>,
}

fn block_on<F: Future<Output = anyhow::Result<()>>>(f: F) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open(place: &Place) -> anyhow::Result<Db> {
    let config = Config::load(place.config.as_deref(), place.data.as_deref(), None)?;
    if config.database_url.is_empty() {
        std::fs::create_dir_all(&config.data)
            .with_context(|| format!("creating {}", config.data.display()))?;
    }
    Db::open(&config.database_url()).await
}

async fn new_token(db: &Db, account: &str) -> anyhow::Result<(String, String)> {
    let (secret, hash) = auth::new_token();
    let id = format!("tok_{}", auth::random_hex(6));
    db.insert_token(&id, account, &hash).await?;
    Ok((id, secret))
}

pub fn accounts(args: AccountsArgs) -> ExitCode {
    block_on(async move {
        let db = open(&args.place).await?;
        match args.command {
            AccountsCommand::Create { plan, credits } => {
                let id = format!("acc_{}", auth::random_hex(8));
                db.create_account(&id, &plan, credits as i64).await?;
                let (token_id, token) = new_token(&db, &id).await?;
                if args.place.json {
                    println!(
                        "{}",
                        json!({"id": id, "plan": plan, "credits": credits,
                               "token": token, "token_id": token_id})
                    );
                } else {
                    println!("account {id} ({plan}, {credits} credits)");
                    println!("token   {token}");
                    println!("        (id {token_id}; shown once: store it now)");
                }
            }
            AccountsCommand::List => {
                let accounts = db.accounts().await?;
                if args.place.json {
                    let list: Vec<_> = accounts
                        .iter()
                        .map(|a| {
                            json!({"id": a.id, "plan": a.plan, "credits": a.credits,
                                        "created_at": clock::rfc3339(a.created_at)})
                        })
                        .collect();
                    println!("{}", json!(list));
                } else {
                    for a in accounts {
                        println!(
                            "{}  {:<4}  {:>8} credits  created {}",
                            a.id,
                            a.plan,
                            a.credits,
                            clock::rfc3339(a.created_at)
                        );
                    }
                }
            }
            AccountsCommand::SetPlan { account, plan } => {
                if !db.set_plan(&account, &plan).await? {
                    bail!("no account {account}");
                }
                println!("{account} is now on the {plan} plan");
            }
        }
        Ok(())
    })
}

pub fn tokens(args: TokensArgs) -> ExitCode {
    block_on(async move {
        let db = open(&args.place).await?;
        match args.command {
            TokensCommand::Create { account } => {
                if db.account(&account).await?.is_none() {
                    bail!("no account {account}");
                }
                let (id, token) = new_token(&db, &account).await?;
                if args.place.json {
                    println!("{}", json!({"id": id, "account": account, "token": token}));
                } else {
                    println!("token {token}\n      (id {id}; shown once: store it now)");
                }
            }
            TokensCommand::Revoke { token_id } => {
                if !db.revoke_token(&token_id).await? {
                    bail!("no active token {token_id}");
                }
                println!("revoked {token_id}");
            }
            TokensCommand::List { account } => {
                let tokens = db.tokens(&account).await?;
                if args.place.json {
                    let list: Vec<_> = tokens
                        .iter()
                        .map(|t| {
                            json!({"id": t.id, "created_at": clock::rfc3339(t.created_at),
                                        "revoked_at": t.revoked_at.map(clock::rfc3339)})
                        })
                        .collect();
                    println!("{}", json!(list));
                } else {
                    for t in tokens {
                        let state = t.revoked_at.map_or("active".to_string(), |r| {
                            format!("revoked {}", clock::rfc3339(r))
                        });
                        println!(
                            "{}  created {}  {state}",
                            t.id,
                            clock::rfc3339(t.created_at)
                        );
                    }
                }
            }
        }
        Ok(())
    })
}

pub fn credits(args: CreditsArgs) -> ExitCode {
    block_on(async move {
        let db = open(&args.place).await?;
        match args.command {
            CreditsCommand::Add { account, credits } => {
                let Some(total) = db.add_credits(&account, credits as i64).await? else {
                    bail!("no account {account}");
                };
                let used = db.used(&format!("acc:{account}"), "credits").await?;
                if args.place.json {
                    println!(
                        "{}",
                        json!({"account": account, "credits": total, "used": used})
                    );
                } else {
                    println!("{account}: {total} credits purchased, {used} used");
                }
            }
        }
        Ok(())
    })
}

pub fn usage(args: UsageArgs) -> ExitCode {
    block_on(async move {
        let db = open(&args.place).await?;
        let subject = match (&args.account, &args.ip) {
            (Some(a), _) => Some(format!("acc:{a}")),
            (_, Some(ip)) => Some(format!("ip:{ip}")),
            _ => None,
        };
        let rows = db.usage(subject.as_deref()).await?;
        if args.place.json {
            let list: Vec<_> = rows
                .iter()
                .map(|(s, p, u)| json!({"subject": s, "period": p, "used": u}))
                .collect();
            println!("{}", json!(list));
        } else {
            for (s, p, u) in rows {
                println!("{s:<40} {p:<10} {u:>8}");
            }
        }
        Ok(())
    })
}
