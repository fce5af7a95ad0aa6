//! Launchers for real servers bound to `127.0.0.1`, stopped and cleaned up on drop.
