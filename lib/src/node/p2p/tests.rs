//! Tests of P2pNode.
