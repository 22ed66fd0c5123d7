//! API tokens: stored as hashes, authenticated by hash, revoked for good.

use crate::*;
use capacity_domain::OrgId;
use capacity_store::{NewToken, TokenKind};
use std::sync::Arc;

pub async fn tokens_authenticate_until_revoked(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let platform_hash = [7u8; 32];
    let org_hash = [9u8; 32];
    let p = s
        .create_token(
            NewToken {
                kind: TokenKind::Platform,
                organization_id: None,
                workspaces: vec![],
                access: Access::Write,
                hash: platform_hash,
            },
            now(),
        )
        .await
        .unwrap();
    assert_eq!(p.id, "TOK-26-000001");
    assert_eq!((p.created_at, p.revoked_at), (now(), None));
    let o = s
        .create_token(
            NewToken {
                kind: TokenKind::Organization,
                organization_id: Some(OrgId::parse(ORG_A).unwrap()),
                workspaces: vec![ws(WS_A), ws(WS_B)],
                access: Access::Read,
                hash: org_hash,
            },
            now(),
        )
        .await
        .unwrap();

    let who = s.authenticate(platform_hash).await.unwrap().unwrap();
    assert_eq!(who.token_id, p.id);
    assert_eq!(who.tenant, Tenant::Platform);
    assert_eq!(who.access, Access::Write);
    let who = s.authenticate(org_hash).await.unwrap().unwrap();
    assert_eq!(who.token_id, o.id);
    assert_eq!(who.access, Access::Read);
    assert_eq!(
        who.tenant,
        Tenant::Organization {
            id: OrgId::parse(ORG_A).unwrap(),
            workspaces: Some(vec![ws(WS_A), ws(WS_B)]),
        }
    );
    assert_eq!(s.authenticate([1u8; 32]).await.unwrap(), None);

    let later = now().plus_micros(days(1));
    assert!(s.revoke_token(&o.id, later).await.unwrap());
    assert!(
        !s.revoke_token(&o.id, later).await.unwrap(),
        "already revoked"
    );
    assert!(!s.revoke_token("TOK-26-999999", later).await.unwrap());
    assert_eq!(s.authenticate(org_hash).await.unwrap(), None);
    assert!(s.authenticate(platform_hash).await.unwrap().is_some());

    let all = s.list_tokens().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, p.id);
    assert_eq!(all[1].id, o.id);
    assert_eq!(all[1].revoked_at, Some(later));
    assert_eq!(all[1].workspaces, vec![ws(WS_A), ws(WS_B)]);
}

/// The secret hash of [`a_narrowed_token`].
pub const NARROWED_HASH: [u8; 32] = [5u8; 32];

/// Mints a token narrowed to one workspace, for a backend's test to damage
/// its stored workspace list before [`an_unreadable_workspace_list_fails_closed`].
pub async fn a_narrowed_token(store: &dyn Store) -> String {
    store
        .create_token(
            NewToken {
                kind: TokenKind::Organization,
                organization_id: Some(OrgId::parse(ORG_A).unwrap()),
                workspaces: vec![ws(WS_A)],
                access: Access::Read,
                hash: NARROWED_HASH,
            },
            now(),
        )
        .await
        .unwrap()
        .id
}

/// A token whose stored workspace list does not decode is refused with an
/// error: never read as "no narrowing" (the whole organization).
pub async fn an_unreadable_workspace_list_fails_closed(store: &dyn Store) {
    match store.authenticate(NARROWED_HASH).await {
        Err(StoreError::Internal(_)) => {}
        other => panic!("an unreadable workspace list must fail closed, got {other:?}"),
    }
    assert!(
        store.list_tokens().await.is_err(),
        "listing must not show the token as unnarrowed either"
    );
}
