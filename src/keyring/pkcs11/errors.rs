//! The one mapping from PKCS#11 failures to their meaning here and to [`RootKeyError`].
//!
//! Every cryptoki error the provider looks at goes through [`classify`]: the session pool
//! asks it whether the connection is lost, the login whether the token is logged in already,
//! and [`to_root_error`] turns the same answer into the error the caller gets (a wrong PIN,
//! a token that went away, a wrapped key the token rejected). Messages name the PKCS#11
//! function and return value only, never key material or the PIN.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

use crate::error::RootKeyError;

/// What a failed PKCS#11 call means to the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// `C_Initialize`: the module is initialised already (by this provider or by other code
    /// in the process). Not a failure.
    AlreadyInitialized,
    /// `C_Login`: the token is logged in already; the PIN is then checked against the
    /// process's login record.
    AlreadyLoggedIn,
    /// The module was finalized under the provider: its session handles mean nothing now
    /// (or worse, name sessions that other code opened since).
    Finalized,
    /// The session or the token is gone (device removed or reset, session closed).
    Gone,
    /// The login or the key handle stopped working (other code logged out, the key was
    /// destroyed): a reconnection finds out whether the key is still there.
    Stale,
    /// The token refused the PIN.
    WrongPin,
    /// The token's user PIN is locked.
    PinLocked,
    /// The token's user PIN was never set.
    PinNotInitialized,
    /// `C_Decrypt` itself failed: the wrapped bytes, the associated data or the key do not
    /// match. Tokens report a failed GCM tag check in different ways (SoftHSM2 2.6:
    /// `CKR_GENERAL_ERROR`); failures to start the decryption (`C_DecryptInit`) and device
    /// trouble are not counted here.
    Rejected,
    /// Anything else.
    Other,
}

impl Failure {
    /// Whether the connection is lost and worth one reconnection: `Some(true)` if the module
    /// was finalized, `Some(false)` for other losses, `None` if not lost.
    pub(super) fn lost(self) -> Option<bool> {
        match self {
            Self::Finalized => Some(true),
            Self::Gone | Self::Stale => Some(false),
            _ => None,
        }
    }
}

/// The table: what the failure `e` means.
pub(super) fn classify(e: &CkError) -> Failure {
    let CkError::Pkcs11(rv, function) = e else {
        return Failure::Other;
    };
    match (rv, function) {
        (RvError::CryptokiAlreadyInitialized, _) => Failure::AlreadyInitialized,
        (RvError::UserAlreadyLoggedIn, _) => Failure::AlreadyLoggedIn,
        (RvError::CryptokiNotInitialized, _) => Failure::Finalized,
        (
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized,
            _,
        ) => Failure::Gone,
        (RvError::UserNotLoggedIn | RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _) => Failure::Stale,
        (RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _) => Failure::WrongPin,
        (RvError::PinLocked, _) => Failure::PinLocked,
        (RvError::UserPinNotInitialized, _) => Failure::PinNotInitialized,
        (
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange
            | RvError::GeneralError
            | RvError::FunctionFailed
            | RvError::ArgumentsBad,
            Function::Decrypt,
        ) => Failure::Rejected,
        _ => Failure::Other,
    }
}

/// The error the caller gets for the failure `e`.
pub(super) fn to_root_error(e: CkError) -> RootKeyError {
    match classify(&e) {
        Failure::Finalized | Failure::Gone => RootKeyError::TokenRemoved,
        Failure::WrongPin => RootKeyError::WrongPin,
        Failure::PinLocked => RootKeyError::Pkcs11("the token's user PIN is locked (CKR_PIN_LOCKED)".to_owned()),
        Failure::PinNotInitialized => RootKeyError::Pkcs11("the token's user PIN is not initialized".to_owned()),
        Failure::Rejected => RootKeyError::Authentication,
        Failure::AlreadyInitialized | Failure::AlreadyLoggedIn | Failure::Stale | Failure::Other => match e {
            CkError::Pkcs11(rv, function) => RootKeyError::Pkcs11(format!("{function:?} returned {rv:?}")),
            other => RootKeyError::Pkcs11(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rv(rv: RvError, function: Function) -> CkError {
        CkError::Pkcs11(rv, function)
    }

    #[test]
    fn lost_connections_reconnect_then_report_token_removed() {
        let finalized = rv(RvError::CryptokiNotInitialized, Function::Encrypt);
        assert_eq!(classify(&finalized).lost(), Some(true));
        assert!(matches!(to_root_error(finalized), RootKeyError::TokenRemoved));
        let gone = rv(RvError::DeviceRemoved, Function::Decrypt);
        assert_eq!(classify(&gone).lost(), Some(false));
        assert!(matches!(to_root_error(gone), RootKeyError::TokenRemoved));
        // A stale handle reconnects, but is not itself proof that the token is gone.
        let stale = rv(RvError::KeyHandleInvalid, Function::EncryptInit);
        assert_eq!(classify(&stale).lost(), Some(false));
        assert!(matches!(to_root_error(stale), RootKeyError::Pkcs11(m) if m.contains("KeyHandleInvalid")));
    }

    #[test]
    fn decrypt_failures_are_authentication_only_in_c_decrypt() {
        assert!(matches!(to_root_error(rv(RvError::GeneralError, Function::Decrypt)), RootKeyError::Authentication));
        assert!(matches!(
            to_root_error(rv(RvError::EncryptedDataInvalid, Function::Decrypt)),
            RootKeyError::Authentication
        ));
        assert!(matches!(to_root_error(rv(RvError::GeneralError, Function::DecryptInit)), RootKeyError::Pkcs11(_)));
        assert!(matches!(to_root_error(rv(RvError::DataInvalid, Function::Encrypt)), RootKeyError::Pkcs11(_)));
        assert_eq!(classify(&rv(RvError::GeneralError, Function::Decrypt)).lost(), None);
    }

    #[test]
    fn pin_failures() {
        for r in [RvError::PinIncorrect, RvError::PinInvalid, RvError::PinLenRange] {
            assert!(matches!(to_root_error(rv(r, Function::Login)), RootKeyError::WrongPin));
        }
        assert!(
            matches!(to_root_error(rv(RvError::PinLocked, Function::Login)), RootKeyError::Pkcs11(m) if m.contains("locked"))
        );
        assert_eq!(classify(&rv(RvError::UserAlreadyLoggedIn, Function::Login)), Failure::AlreadyLoggedIn);
        assert_eq!(classify(&CkError::InvalidValue), Failure::Other);
    }
}
