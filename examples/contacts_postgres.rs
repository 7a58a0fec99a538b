//! Searchable sealed contacts in PostgreSQL: emails and phone numbers sealed per tenant,
//! found by blind index without decrypting every row, through a key rotation.
//!
//! ```text
//! cargo run --example contacts_postgres --features postgres
//! DATABASE_URL='host=127.0.0.1 user=me dbname=mydb' cargo run --example contacts_postgres --features postgres
//! ```
//!
//! Without `DATABASE_URL` it starts a throwaway PostgreSQL server from Debian's binaries
//! (`apt-get install postgresql`) on 127.0.0.1 and stops it at the end. With it, it uses a
//! temporary table, which disappears when the example's connection closes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/common/postgres.rs"]
mod pg;

use atrest::{
    BlindIndex, Context, IndexPlanner, IndexWarning, KeyState, Keyring, LocalRootKey, Tenant, Transform, record_info,
};
use postgres::{Client, NoTls};

const CONTACTS: i64 = 5_000;

const SCHEMA: &str = "
CREATE TEMP TABLE contacts (
    tenant          text   NOT NULL,
    id              bigint NOT NULL,
    email           bytea  NOT NULL,  -- sealed: tenant + table, column, row id bound in
    phone           bytea  NOT NULL,  -- sealed
    email_idx       bigint NOT NULL,  -- blind index values: a btree over tenant and value
    phone_last4_idx bigint NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX ON contacts (tenant, email_idx);
CREATE INDEX ON contacts (tenant, phone_last4_idx);";

/// Each sealed column is bound to its table, column and row (and, by the record, its tenant).
fn ctx(column: &str, id: i64) -> Context {
    Context::new().with("table", "contacts").with("column", column).with("row", id.to_string())
}

struct Indexes {
    email: BlindIndex,
    last4: BlindIndex,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A database: the caller's, or a throwaway server.
    let server;
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            server = pg::PgServer::start("this example").ok_or("no PostgreSQL: set DATABASE_URL")?;
            server.conn_str("postgres")
        }
    };
    let mut db = Client::connect(&url, NoTls)?;
    db.batch_execute(SCHEMA)?;

    // A keyring (in memory here; see the quickstart for key files) and two tenants.
    let keyring = Keyring::in_memory(LocalRootKey::generate()?)?;
    let tenants = [keyring.tenant("acme")?, keyring.tenant("globex")?];

    // 1. Index definitions, sized by the planner: rows per tenant, acceptable false
    //    positives per lookup. The last four digits have only 10,000 values: the planner
    //    warns that a wide index would name them, and says how wide is private.
    let email_plan = IndexPlanner::new(1_000_000, 0.01).plan()?;
    let last4_plan = IndexPlanner::new(1_000_000, 0.01).distinct_values(10_000).plan()?;
    let last4_bits = match last4_plan.warnings.first() {
        Some(IndexWarning::NearlyUnique { max_private_bits, false_positives_at_max, .. }) => {
            println!(
                "planner: {} bits would single out last-4 values; using {max_private_bits} (~{false_positives_at_max:.0} false positives per lookup at 1M rows)",
                last4_plan.bits
            );
            *max_private_bits
        }
        _ => last4_plan.bits,
    };
    println!("email index: {} bits, last-4 index: {last4_bits} bits", email_plan.bits);
    let ix = Indexes {
        email: BlindIndex::builder("contacts.email").bits(email_plan.bits).field(Transform::LowercaseTrim).build()?,
        last4: BlindIndex::builder("contacts.phone_last4").bits(last4_bits).field(Transform::LastDigits(4)).build()?,
    };

    // 2. Insert: seal each value and compute its index values under the same key version.
    for t in &tenants {
        let mut tx = db.transaction()?;
        let insert = tx.prepare("INSERT INTO contacts VALUES ($1, $2, $3, $4, $5, $6)")?;
        for id in 0..CONTACTS {
            let email = t.seal_indexed(format!("user{id}@example.com").as_bytes(), &ctx("email", id), &[&ix.email])?;
            let phone = t.seal_indexed(format!("+1 555 010 {id:04}").as_bytes(), &ctx("phone", id), &[&ix.last4])?;
            let (e, p) = (email.index_values[0].to_i64()?, phone.index_values[0].to_i64()?);
            tx.execute(&insert, &[&t.id().as_str(), &id, &email.sealed, &phone.sealed, &e, &p])?;
        }
        tx.commit()?;
    }
    println!("inserted {CONTACTS} contacts for each of {} tenants", tenants.len());

    // 3. Find a contact by email without decrypting the table.
    let acme = &tenants[0];
    println!(
        "acme looks up ' User42@Example.com': rows {:?}",
        find_by_email(&mut db, acme, &ix, " User42@Example.com")?
    );
    let (rows, false_positives) = find_by_last4(&mut db, acme, &ix, "0042")?;
    println!("acme looks up phones ending in 0042: rows {rows:?} ({false_positives} false positives dropped)");

    // 4. Rotation without downtime: a new master version; lookups now carry one value per
    //    version in use, so rows not migrated yet still match.
    keyring.rotate()?;
    println!("rotated: lookups cover {}", versions(acme)?);
    for t in &tenants {
        for start in (0..CONTACTS).step_by(1_000) {
            migrate_batch(&mut db, t, &ix, start, start + 1_000)?;
            // Reads keep working in the middle of the migration.
            assert_eq!(find_by_email(&mut db, t, &ix, "user4999@example.com")?, [4999]);
        }
    }
    let row: Vec<u8> = db.query_one("SELECT email FROM contacts WHERE tenant = 'acme' AND id = 7", &[])?.get(0);
    println!("migrated every row; row 7's record is now under {}", record_info(&row)?.key_version);

    // 5. Once every row is migrated, the old version can be disabled: lookups shrink to one value.
    keyring.set_state(atrest::MasterVersion::new(1), KeyState::Disabled)?;
    println!("v1 disabled: lookups cover {}", versions(acme)?);
    println!(
        "globex looks up user42@example.com: rows {:?}",
        find_by_email(&mut db, &tenants[1], &ix, "user42@example.com")?
    );
    Ok(())
}

fn versions(t: &Tenant) -> Result<String, atrest::IndexError> {
    Ok(t.blind_index_versions()?.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
}

/// Candidates by blind index (this tenant only), opened; false positives dropped. (A real
/// application prepares this query once and sets `plan_cache_mode = force_generic_plan`:
/// PostgreSQL otherwise plans `= ANY($2)` afresh on every execution.)
fn find_by_email(
    db: &mut Client,
    t: &Tenant,
    ix: &Indexes,
    email: &str,
) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
    let lookup = t.blind_index_lookup(&ix.email, &[email])?;
    let rows = db.query(
        "SELECT id, email FROM contacts WHERE tenant = $1 AND email_idx = ANY($2)",
        &[&t.id().as_str(), &lookup.to_i64s()?],
    )?;
    let want = email.trim().to_lowercase();
    let mut ids = Vec::new();
    for r in rows {
        let id: i64 = r.get(0);
        if String::from_utf8(t.open(r.get(1), &ctx("email", id))?)?.to_lowercase() == want {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The same for the last four digits: a narrow index, so more false positives to drop.
fn find_by_last4(
    db: &mut Client,
    t: &Tenant,
    ix: &Indexes,
    last4: &str,
) -> Result<(Vec<i64>, usize), Box<dyn std::error::Error>> {
    let lookup = t.blind_index_lookup(&ix.last4, &[last4])?;
    let rows = db.query(
        "SELECT id, phone FROM contacts WHERE tenant = $1 AND phone_last4_idx = ANY($2)",
        &[&t.id().as_str(), &lookup.to_i64s()?],
    )?;
    let (mut ids, mut false_positives) = (Vec::new(), 0);
    for r in rows {
        let id: i64 = r.get(0);
        if t.open(r.get(1), &ctx("phone", id))?.ends_with(last4.as_bytes()) {
            ids.push(id);
        } else {
            false_positives += 1;
        }
    }
    Ok((ids, false_positives))
}

/// Rewraps one batch of rows and their index values in one transaction.
fn migrate_batch(
    db: &mut Client,
    t: &Tenant,
    ix: &Indexes,
    from: i64,
    to: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = db.transaction()?;
    let rows = tx.query(
        "SELECT id, email, phone FROM contacts WHERE tenant = $1 AND id >= $2 AND id < $3 FOR UPDATE",
        &[&t.id().as_str(), &from, &to],
    )?;
    for r in rows {
        let id: i64 = r.get(0);
        let (email, phone): (Vec<u8>, Vec<u8>) = (r.get(1), r.get(2));
        if !t.needs_rewrap(&email)? {
            continue;
        }
        let e = t.rewrap_indexed(&email, &ctx("email", id), &[&ix.email])?;
        let p = t.rewrap_indexed(&phone, &ctx("phone", id), &[&ix.last4])?;
        tx.execute(
            "UPDATE contacts SET email = $3, phone = $4, email_idx = $5, phone_last4_idx = $6 WHERE tenant = $1 AND id = $2",
            &[&t.id().as_str(), &id, &e.sealed, &p.sealed, &e.index_values[0].to_i64()?, &p.index_values[0].to_i64()?],
        )?;
    }
    tx.commit()?;
    Ok(())
}
