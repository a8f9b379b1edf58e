//! Turns a Kubefile and its context into an image in the store.
