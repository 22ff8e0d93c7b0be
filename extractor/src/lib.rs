//! Stage one: runs a language model over text and writes its MLP inputs and outputs to an activation cache
//! through `cache-format`. Not implemented yet (issue 4): the crate exists so the workspace has its final shape.
