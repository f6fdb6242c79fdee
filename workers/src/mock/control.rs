//! The control API of a standalone mock pair (plain HTTP): recorded pushes, counters,
//! scripting and reset, for SREs and tools that run `herald-mock-push`.
