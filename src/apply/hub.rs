//! The in-cluster registry's password (`runtime::hub`): made once per
//! cluster, from the operating system's random source, and kept in the
//! saved cluster's status (a 0600 file), so that every later command hands
//! hosts the same one in their requests.

use super::ApplyError;
use crate::cluster::{Cluster, Secret};

/// Random bytes of a new password (hex: 32 characters, no character that
/// any config file or header would need to quote).
const PASSWORD_BYTES: usize = 16;

/// Gives `cluster` a hub password unless it has one.
pub(super) fn ensure_password(cluster: &mut Cluster) -> Result<(), ApplyError> {
    if cluster.status.hub_password.is_some() {
        return Ok(());
    }
    let mut bytes = [0u8; PASSWORD_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApplyError::Unsupported(format!(
            "cannot make the in-cluster registry's password: the operating system's random source failed: {e}"
        ))
    })?;
    cluster.status.hub_password = Some(Secret::new(hex::encode(bytes)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_gets_one_password_and_keeps_it() {
        let mut a = Cluster::new("a");
        ensure_password(&mut a).unwrap();
        let first = a.status.hub_password.clone().unwrap();
        assert_eq!(first.expose().len(), 2 * PASSWORD_BYTES);
        ensure_password(&mut a).unwrap();
        assert_eq!(a.status.hub_password.as_ref(), Some(&first));
        let mut b = Cluster::new("b");
        ensure_password(&mut b).unwrap();
        assert_ne!(b.status.hub_password, Some(first));
    }
}
