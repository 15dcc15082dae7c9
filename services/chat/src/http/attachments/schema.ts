import Type from 'typebox'
import { MessageId, RoomId } from '../../domain/schemas.ts'

/** The `roomId` field of `POST /api/uploads`. */
export const UploadFields = Type.Object({ roomId: RoomId })

/** The whole form, for the OpenAPI document: `roomId` first, then `file` (the route reads the parts itself). */
export const UploadForm = Type.Object({ roomId: RoomId, file: Type.String({ format: 'binary', description: 'the file; its type is judged from its bytes' }) })

export const AttachmentParams = Type.Object({ id: MessageId })

/** `?room=<roomId>`: the attachment's room, as the URL the server hands out names it (D121). */
export const AttachmentQuery = Type.Object({ room: Type.Optional(RoomId) })
